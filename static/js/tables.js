// Wide tables scroll sideways inside their own box instead of making the whole page wider than a phone screen.
// Each table of the page (and of every fragment htmx swaps in) is wrapped once in <div class="table-scroll">.
(function () {
  function wrap(root) {
    (root || document).querySelectorAll(".page table").forEach(function (table) {
      var parent = table.parentElement;
      if (!parent || parent.classList.contains("table-scroll")) return;
      var box = document.createElement("div");
      box.className = "table-scroll";
      parent.insertBefore(box, table);
      box.appendChild(table);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { wrap(document); });
  document.addEventListener("htmx:afterSettle", function (event) { wrap(event.target.closest(".page") ? event.target : document); });
})();
