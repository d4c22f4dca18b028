// hitl-gate web UI: times in the browser's time zone, countdowns, the live inbox (its counts in
// the tab title, an opt-in notification for each new request for you), who else has a request
// open, and the confirmation field. Every page works without this script; it only makes them
// live.
'use strict';
(function () {
  // The server's clock, so a skewed browser clock does not move the countdowns.
  var offset = Number(document.body.dataset.now || Date.now()) - Date.now();
  function now() { return Date.now() + offset; }
  function pad(n) { return n < 10 ? '0' + n : String(n); }
  // As the server writes it (src/server/web/fmt.rs): "2 days 3 h", "1 h 5 min", "14 min".
  function duration(min) {
    var d = Math.floor(min / 1440), h = Math.floor(min % 1440 / 60), m = min % 60;
    if (d > 0) {
      var days = d === 1 ? '1 day' : d + ' days';
      return h === 0 ? days : days + ' ' + h + ' h';
    }
    if (h === 0) { return m + ' min'; }
    return m === 0 ? h + ' h' : h + ' h ' + m + ' min';
  }
  function left(ms) {
    if (ms <= 0) { return 'expired'; }
    var s = Math.floor(ms / 1000);
    if (s >= 600) { return duration(Math.floor(s / 60)) + ' left'; }
    if (s >= 60) { return Math.floor(s / 60) + ' min ' + pad(s % 60) + ' s left'; }
    return s + ' s left';
  }
  function tick() {
    var t = now();
    document.querySelectorAll('[data-deadline]').forEach(function (el) {
      var ms = Number(el.dataset.deadline) - t;
      el.textContent = left(ms);
      el.classList.toggle('soon', ms > 0 && ms < 60000);
    });
  }
  // Times: the browser's own time zone; the UTC the server wrote stays in the tooltip.
  function localTimes(root) {
    root.querySelectorAll('time[data-local]').forEach(function (el) {
      var d = new Date(el.getAttribute('datetime'));
      if (!isNaN(d)) {
        el.textContent = d.toLocaleString(undefined, {
          year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
          second: '2-digit', timeZoneName: 'short'
        });
      }
    });
  }
  localTimes(document);
  tick();
  setInterval(tick, 1000);

  // New requests for you: a browser notification, when asked for (the choice is kept in this
  // browser). The choice is read once: Notification.permission is a synchronous round trip to
  // the browser, so it is asked only when a notification is due.
  var notify = document.getElementById('notify');
  var optedIn = false;
  if (notify) {
    try { optedIn = localStorage.getItem('hitl-gate-notify') === '1'; } catch (e) { optedIn = false; }
  }
  var wanted = function () {
    return optedIn && window.Notification && Notification.permission === 'granted';
  };
  var showNotify = function () {
    var on = wanted();
    notify.setAttribute('aria-pressed', on ? 'true' : 'false');
    notify.textContent = on ? 'Notifications on (turn off)' : 'Notify me of new requests for me';
  };
  if (notify && window.Notification) {
    notify.hidden = false;
    showNotify();
    notify.addEventListener('click', function () {
      if (wanted()) {
        optedIn = false;
        try { localStorage.removeItem('hitl-gate-notify'); } catch (e) { /* kept for this page */ }
        showNotify();
        return;
      }
      Promise.resolve(Notification.requestPermission()).then(function (p) {
        if (p === 'granted') {
          optedIn = true;
          try { localStorage.setItem('hitl-gate-notify', '1'); } catch (e) { /* this page only */ }
        }
        showNotify();
      });
    });
  }
  function mineIds(root) {
    var ids = {};
    root.querySelectorAll('li[data-for-me]').forEach(function (li) { ids[li.dataset.id] = li; });
    return ids;
  }

  // The live inbox: the server names every request created or ended; the rows are fetched
  // again, rendered by the server, with both views' counts. At most one fetch is in flight and
  // one more is queued, however many events arrive.
  var rows = document.getElementById('inbox-rows');
  if (rows && window.EventSource) {
    var view = rows.dataset.view === 'mine' ? '?for=me' : '';
    var known = mineIds(rows);
    var busy = false, again = false;
    // The counts come with the rows and are drawn after them. The tab title is set in a task of
    // its own, and only when it changes: setting it costs the browser a round trip, which the
    // rows need not wait for.
    var title = document.title;
    var counts = function (all, mine) {
      if (all !== null) { document.getElementById('count-all').textContent = all; }
      if (mine !== null) {
        document.getElementById('count-mine').textContent = mine;
        var next = (Number(mine) > 0 ? '(' + mine + ') ' : '') + 'Inbox · hitl-gate';
        if (next !== title) {
          title = next;
          setTimeout(function () { document.title = title; }, 0);
        }
      }
    };
    var announce = function () {
      var current = mineIds(rows);
      var fresh = Object.keys(current).filter(function (id) { return !(id in known); });
      known = current;
      if (fresh.length === 0 || !wanted()) { return; }
      fresh.forEach(function (id) {
        var li = current[id], env = li.querySelector('.env'), cmd = li.querySelector('.cmd');
        var n = new Notification('hitl-gate: a request for you', {
          body: (env ? env.textContent + ': ' : '') + (cmd ? cmd.textContent : ''), tag: id
        });
        n.onclick = function () { window.focus(); window.location.href = '/ui/requests/' + id; };
      });
    };
    var refresh = function () {
      if (busy) { again = true; return; }
      busy = true;
      fetch('/ui/inbox-rows' + view, { credentials: 'same-origin', cache: 'no-store' })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); }
          if (!r.ok) { throw new Error(String(r.status)); }
          var all = r.headers.get('x-pending'), mine = r.headers.get('x-for-me');
          return r.text().then(function (html) { return [html, all, mine]; });
        })
        .then(function (got) {
          rows.innerHTML = got[0];
          localTimes(rows);
          tick();
          counts(got[1], got[2]);
          announce();
        })
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

  // A request's page: who else has it open, and a notice when it changes under the reader.
  var presence = document.querySelector('#presence[data-watch]');
  if (presence && window.EventSource) {
    var id = presence.dataset.watch;
    var watch = new EventSource('/ui/events?watch=' + encodeURIComponent(id));
    watch.addEventListener('presence', function (e) {
      var names = [];
      try { names = JSON.parse(e.data); } catch (err) { names = []; }
      presence.textContent = names.length === 0 ? 'Nobody else has this request open.'
        : 'Also open now by ' + names.join(', ') + '.';
    });
    var changed = function (e) {
      if (e.data === id) { document.getElementById('changed').hidden = false; }
    };
    watch.addEventListener('created', changed);
    watch.addEventListener('ended', changed);
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
