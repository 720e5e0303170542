/* ipywidgets' html-manager typesets widget text with MathJax 2's MathJax.Hub.Queue; the book loads
   MathJax 3, which has no Hub. Map the call onto MathJax 3 so widgets render without a JS error.
   Loaded with `defer` after MathJax (see _config.yml). */
(function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub) { return; }
  mj.Hub = {
    Queue: function (command) {
      var element = Array.isArray(command) ? command[2] : undefined;
      var ready = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
      ready.then(function () {
        if (mj.typesetPromise) { return mj.typesetPromise(element ? [element] : undefined); }
      }).catch(function (err) { console.warn("MathJax typeset of a widget failed:", err); });
    }
  };
})();
