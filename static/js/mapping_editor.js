// The mapping editor: add / remove trait rows, suggest trait names, show the Group ID only for Group, pick
// "Set a trait" when its trait name is edited.
// Event delegation on document, so it keeps working after htmx swaps the form (another data model chosen).
(function () {
  "use strict";

  function form() { return document.getElementById("mapping-form"); }

  document.addEventListener("click", function (event) {
    var add = event.target.closest("[data-add-trait]");
    if (add) {
      var template = document.getElementById("trait-row-template");
      var rows = document.getElementById("trait-rows");
      if (!template || !rows) return; // no JS path: the button posts op=add_row
      event.preventDefault();
      var row = template.content.firstElementChild.cloneNode(true);
      rows.appendChild(row);
      row.querySelector("select").focus();
      return;
    }
    var remove = event.target.closest("[data-remove-trait]");
    if (remove) {
      event.preventDefault();
      var tr = remove.closest("tr");
      var next = tr.nextElementSibling;
      if (next && next.classList.contains("trait-errors")) next.remove();
      tr.remove();
    }
  });

  // Typing the archived trait's name means "Set a trait": choose it, so the name is not entered in vain. (On
  // typing, not on focus: tabbing through the form must not change the choice.)
  document.addEventListener("input", function (event) {
    if (!event.target.matches || !event.target.matches("[data-archived-trait]")) return;
    var radio = document.querySelector("input[name=archived_behaviour][value=trait]");
    if (radio && !radio.checked) radio.checked = true;
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.name === "trait_column") {
      var input = target.closest("tr").querySelector("input[name=trait_name]");
      var option = target.selectedOptions[0];
      var suggestion = option ? option.getAttribute("data-suggest") || "" : "";
      // Only replace a name the user has not typed themselves.
      if (!input.value || input.value === input.getAttribute("data-suggested")) {
        input.value = suggestion;
        input.setAttribute("data-suggested", suggestion);
      }
    } else if (target.name === "action" && form()) {
      form().setAttribute("data-action", target.value);
    }
  });
})();
