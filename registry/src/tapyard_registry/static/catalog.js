// The catalog's only script: a changed filter submits the search form, and
// "Copy" puts the install command on the clipboard. Everything works without it.
(function () {
  "use strict";
  var form = document.getElementById("search");
  if (form) {
    var filters = form.querySelectorAll("select.filter");
    for (var i = 0; i < filters.length; i++) {
      filters[i].addEventListener("change", function () { form.submit(); });
    }
  }
  var copy = document.getElementById("copy");
  if (copy) {
    copy.addEventListener("click", function () {
      var text = document.getElementById(copy.getAttribute("data-copy")).textContent;
      if (navigator.clipboard) { navigator.clipboard.writeText(text); }
      copy.textContent = "Copied";
    });
  }
})();
