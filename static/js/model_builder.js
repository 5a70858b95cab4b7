// The data model builder: filter the property list as you type, keep the "N selected" counters current.
// The live preview itself is htmx (triggered by the "columns-changed" event sent below); this file does the list.
(function () {
  "use strict";
  var form = document.getElementById("model-form");
  if (!form) return;
  var search = document.getElementById("column-search");
  var noMatch = document.getElementById("no-match");
  var total = document.getElementById("selected-count");

  function filter() {
    var words = (search.value || "").toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    form.querySelectorAll("details.col-group").forEach(function (group) {
      var visible = 0;
      group.querySelectorAll("label.col-option").forEach(function (option) {
        var text = option.getAttribute("data-search") || "";
        var match = words.every(function (w) { return text.indexOf(w) !== -1; });
        option.hidden = !match;
        if (match) visible++;
      });
      group.hidden = visible === 0;
      if (words.length && visible) group.open = true;
      shown += visible;
    });
    if (noMatch) noMatch.hidden = shown !== 0;
  }

  function count() {
    var all = 0;
    form.querySelectorAll("details.col-group").forEach(function (group) {
      var n = group.querySelectorAll("input[name=columns]:checked, input[type=hidden][name=columns]").length;
      var out = group.querySelector(".group-selected");
      if (out) out.textContent = n;
      all += n;
    });
    if (total) total.textContent = all + " selected";
  }

  if (search) {
    search.addEventListener("input", filter);
    // Enter in the search box must not submit the model.
    search.addEventListener("keydown", function (e) { if (e.key === "Enter") e.preventDefault(); });
  }
  form.addEventListener("change", function (e) {
    if (e.target && e.target.name === "columns") {
      count();
      // The preview listens for this (hx-trigger "columns-changed from:#model-form"): an htmx event filter
      // would need eval, which the Content-Security-Policy forbids.
      form.dispatchEvent(new CustomEvent("columns-changed", {bubbles: true}));
    }
  });
})();
