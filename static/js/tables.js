// Wide tables scroll sideways inside their own box instead of making the whole page wider than a phone screen.
// Each table of the page (and of every fragment htmx swaps in) is wrapped once in <div class="table-scroll">, and
// each body cell gets its column's heading as data-label: on a phone most tables show one card per row, each
// value labelled with its column (app.css).
(function () {
  function label(table) {
    var heads = table.tHead ? Array.prototype.map.call(table.tHead.querySelectorAll("tr:last-child > th"), function (th) {
      var span = parseInt(th.getAttribute("colspan"), 10) || 1;
      var text = th.textContent.replace(/\s+/g, " ").trim();
      return { text: text, span: span };
    }) : [];
    if (!heads.length) return;
    var names = [];
    heads.forEach(function (h) { for (var i = 0; i < h.span; i++) names.push(h.text); });
    Array.prototype.forEach.call(table.tBodies, function (body) {
      Array.prototype.forEach.call(body.rows, function (row) {
        var column = 0;
        Array.prototype.forEach.call(row.cells, function (cell) {
          var name = names[column];
          if (name && !cell.hasAttribute("data-label")) cell.setAttribute("data-label", name);
          column += cell.colSpan || 1;
        });
      });
    });
  }
  function wrap(root) {
    (root || document).querySelectorAll(".page table").forEach(function (table) {
      label(table);
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
