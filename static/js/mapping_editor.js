// The mapping editor: add / remove trait rows, suggest trait names, show the Group ID only for Group.
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
