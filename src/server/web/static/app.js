// hitl-gate web UI: countdowns, the live inbox and the confirmation field. Every page works
// without this script; it only makes them live.
'use strict';
(function () {
  // The server's clock, so a skewed browser clock does not move the countdowns.
  var offset = Number(document.body.dataset.now || Date.now()) - Date.now();
  function now() { return Date.now() + offset; }
  function pad(n) { return n < 10 ? '0' + n : String(n); }
  function left(ms) {
    if (ms <= 0) { return 'expired'; }
    var s = Math.floor(ms / 1000);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
    if (h > 0) { return h + 'h ' + pad(m) + 'm ' + pad(x) + 's left'; }
    if (m > 0) { return m + 'm ' + pad(x) + 's left'; }
    return x + 's left';
  }
  function tick() {
    var t = now();
    document.querySelectorAll('[data-deadline]').forEach(function (el) {
      var ms = Number(el.dataset.deadline) - t;
      el.textContent = left(ms);
      el.classList.toggle('soon', ms > 0 && ms < 60000);
    });
  }
  tick();
  setInterval(tick, 1000);

  // The live inbox: the server names every request created or ended; the rows are fetched
  // again, rendered by the server.
  // At most one fetch is in flight and one more is queued, however many events arrive.
  var rows = document.getElementById('inbox-rows');
  if (rows && window.EventSource) {
    var busy = false, again = false;
    var refresh = function () {
      if (busy) { again = true; return; }
      busy = true;
      fetch('/ui/inbox-rows', { credentials: 'same-origin', cache: 'no-store' })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); }
          if (!r.ok) { throw new Error(String(r.status)); }
          return r.text();
        })
        .then(function (html) { rows.innerHTML = html; tick(); })
        .catch(function () {})
        .then(function () {
          busy = false;
          if (again) { again = false; refresh(); }
        });
    };
    var events = new EventSource('/ui/events');
    events.addEventListener('created', refresh);
    events.addEventListener('ended', refresh);
    // After a reconnect, catch up with what was missed.
    events.addEventListener('open', refresh);
    // The server ended the stream for good (signed out, session over): reload, which signs in.
    events.addEventListener('error', function () {
      if (events.readyState === EventSource.CLOSED) { window.location.reload(); }
    });
  }

  // Approving a delete in a high-risk environment: the button waits for the environment's name
  // (the server checks it too).
  var confirmField = document.querySelector('input[data-confirm]');
  var approve = document.querySelector('button[value=approve]');
  if (confirmField && approve) {
    var check = function () { approve.disabled = confirmField.value.trim() !== confirmField.dataset.confirm; };
    confirmField.addEventListener('input', check);
    check();
  }
})();
