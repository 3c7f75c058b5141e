"use strict";
(function () {
  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ""; }
    var v = cell.getAttribute("data-v");
    return v === null ? cell.textContent.trim() : v;
  }
  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var numeric = rows.every(function (r) { var v = cellValue(r, index); return v === "" || !isNaN(Number(v)); });
    rows.sort(function (a, b) {
      var x = cellValue(a, index), y = cellValue(b, index);
      if (x === "" && y !== "") { return 1; }
      if (y === "" && x !== "") { return -1; }
      var c = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return ascending ? c : -c;
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, index, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, index, th); } });
    });
  });
  function applyFilters(box) {
    var table = document.getElementById(box.getAttribute("data-table"));
    var text = box.querySelector("input[type=search]");
    var needle = text ? text.value.trim().toLowerCase() : "";
    var selects = box.querySelectorAll("select[data-field]");
    var shown = 0, rows = table.tBodies[0].rows;
    Array.prototype.forEach.call(rows, function (row) {
      var ok = needle === "" || row.textContent.toLowerCase().indexOf(needle) !== -1;
      Array.prototype.forEach.call(selects, function (sel) {
        if (sel.value !== "" && row.getAttribute("data-" + sel.getAttribute("data-field")) !== sel.value) { ok = false; }
      });
      row.classList.toggle("hidden", !ok);
      if (ok) { shown += 1; }
    });
    var count = box.querySelector(".count");
    if (count) { count.textContent = shown + " of " + rows.length + " rows shown"; }
  }
  Array.prototype.forEach.call(document.querySelectorAll(".filters[data-table]"), function (box) {
    Array.prototype.forEach.call(box.querySelectorAll("input, select"), function (input) {
      input.addEventListener("input", function () { applyFilters(box); });
      input.addEventListener("change", function () { applyFilters(box); });
    });
    applyFilters(box);
  });
})();
