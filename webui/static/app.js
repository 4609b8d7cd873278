// mixmaster dashboard: live job lists, the live log, and small comforts.
// Everything that comes from a build or a request is put into the page as
// text (textContent), never as HTML.
(function () {
  'use strict';

  // The most log lines kept on a page; older ones are in the full log.
  var MAX_LINES = 5000;

  var shortTime = new Intl.DateTimeFormat(undefined, {
    month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23'
  });

  // localTimes shows the <time> elements under root in local time.
  function localTimes(root) {
    var times = root.querySelectorAll('time[datetime]');
    for (var i = 0; i < times.length; i++) {
      var d = new Date(times[i].getAttribute('datetime'));
      if (isNaN(d)) continue;
      times[i].textContent = shortTime.format(d);
      times[i].title = d.toLocaleString();
    }
  }

  // duration writes milliseconds as the server does: 450ms, 12.3s,
  // 4m 05s, 2h 03m.
  function duration(ms) {
    if (ms < 0) ms = 0;
    if (ms < 1000) return Math.floor(ms) + 'ms';
    if (ms < 60000) return (ms / 1000).toFixed(1) + 's';
    var s = Math.floor(ms / 1000);
    var pad = function (n) { return (n < 10 ? '0' : '') + n; };
    if (s < 3600) return Math.floor(s / 60) + 'm ' + pad(s % 60) + 's';
    return Math.floor(s / 3600) + 'h ' + pad(Math.floor(s % 3600 / 60)) + 'm';
  }

  // Running jobs count their time up.
  function tickDurations() {
    var els = document.querySelectorAll('.dur[data-since]');
    var now = Date.now();
    for (var i = 0; i < els.length; i++) {
      var since = Date.parse(els[i].getAttribute('data-since'));
      if (!isNaN(since)) els[i].textContent = duration(now - since);
    }
  }

  // badge returns a fresh status badge, cloned from the page's templates
  // so that it looks exactly like the server's.
  function badge(status) {
    var tpl = document.getElementById('badges');
    var b = tpl && tpl.content.querySelector('.st-' + status);
    if (b) return b.cloneNode(true);
    var span = document.createElement('span');
    span.className = 'badge';
    span.textContent = status;
    return span;
  }

  function statusOf(el) {
    var b = el && el.querySelector('.badge');
    var m = b && /\bst-(\w+)/.exec(b.className);
    return m ? m[1] : '';
  }

  function setBadge(el, status) {
    if (!el || statusOf(el) === status) return;
    el.replaceChildren(badge(status));
  }

  function timeCell(td, iso) {
    if (!td || !iso) return;
    var label = td.querySelector('.sm');
    var t = document.createElement('time');
    t.setAttribute('datetime', iso);
    td.replaceChildren();
    if (label) td.appendChild(label);
    td.appendChild(t);
    localTimes(td);
  }

  var DONE = { succeeded: 1, failed: 1, errored: 1, canceled: 1 };

  // liveList keeps a table of jobs current from GET /events, and tells
  // about new jobs that are not on the page.
  function liveList(box) {
    var url = box.getAttribute('data-events');
    if (!url || !window.EventSource) return;
    var project = box.getAttribute('data-project') || '';
    var wanted = box.getAttribute('data-filter-status') || '';
    var announce = box.hasAttribute('data-announce');
    var notice = box.querySelector('.new-jobs');
    var announcer = box.querySelector('.announce');
    var top = 0;
    var rows = box.querySelectorAll('tr[data-job]');
    for (var i = 0; i < rows.length; i++) top = Math.max(top, +rows[i].getAttribute('data-job'));
    var fresh = {}, count = 0;
    var es = new EventSource(url);
    es.addEventListener('job', function (e) {
      var j;
      try { j = JSON.parse(e.data); } catch (err) { return; }
      var row = box.querySelector('tr[data-job="' + j.id + '"]');
      if (row) {
        var before = statusOf(row.querySelector('.c-status'));
        updateRow(row, j);
        if (announcer && before !== j.status && DONE[j.status]) {
          announcer.textContent = 'Job ' + j.id + ' ' + j.status + '.';
        }
        return;
      }
      if (!announce || !notice || j.id <= top || fresh[j.id]) return;
      if (project && j.project !== project) return;
      if (wanted && j.status !== wanted) return;
      fresh[j.id] = true;
      count++;
      notice.querySelector('.count').textContent =
        count === 1 ? '1 new job.' : count + ' new jobs.';
      notice.hidden = false;
    });
  }

  function updateRow(row, j) {
    setBadge(row.querySelector('.c-status'), j.status);
    if (j.startedAt && !row.querySelector('.c-started time')) timeCell(row.querySelector('.c-started'), j.startedAt);
    var dur = row.querySelector('.dur');
    if (!dur) return;
    if (j.status === 'running' && j.startedAt) {
      dur.setAttribute('data-since', j.startedAt);
    } else {
      dur.removeAttribute('data-since');
      if (DONE[j.status]) dur.textContent = j.duration || '';
    }
  }

  // SGR codes of the ANSI colours shown; everything else is dropped.
  function sgr(state, params) {
    var codes = params === '' ? [0] : params.split(';');
    for (var i = 0; i < codes.length; i++) {
      var c = +codes[i];
      if (c === 0) { state.fg = 0; state.bold = false; }
      else if (c === 1) state.bold = true;
      else if (c === 22) state.bold = false;
      else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) state.fg = c;
      else if (c === 39) state.fg = 0;
      else if (c === 38 || c === 48) i += +codes[i + 1] === 5 ? 2 : +codes[i + 1] === 2 ? 4 : 0;
    }
  }

  var CSI = /\x1b\[([0-9;?]*)([ -\/]*)([@-~])/g;

  // ansi appends text to el, turning ANSI colour codes into spans with
  // classes; the text itself only ever becomes text nodes.
  function ansi(el, text) {
    if (text.indexOf('\x1b') < 0) {
      el.textContent = text;
      return;
    }
    var state = { fg: 0, bold: false };
    var last = 0, m;
    var put = function (s) {
      s = s.replace(/\x1b/g, '');
      if (!s) return;
      if (!state.fg && !state.bold) {
        el.appendChild(document.createTextNode(s));
        return;
      }
      var span = document.createElement('span');
      span.className = (state.fg ? 'ansi-' + state.fg : '') + (state.bold ? ' ansi-bold' : '');
      span.textContent = s;
      el.appendChild(span);
    };
    CSI.lastIndex = 0;
    while ((m = CSI.exec(text)) !== null) {
      put(text.slice(last, m.index));
      last = CSI.lastIndex;
      if (m[3] === 'm' && m[2] === '') sgr(state, m[1]);
    }
    put(text.slice(last));
  }

  var MARKS = { '#': 's', '$': 'c', 'O': 'o', '!': 'e' };

  // parseLine splits one raw log line as the server does: by offsets,
  // into its class (the mark), time and text.
  function parseLine(raw) {
    var line = { cls: 'o', time: '', text: raw };
    if (raw.length >= 26 && raw.charAt(24) === ' ' && raw.charAt(10) === 'T' && MARKS[raw.charAt(25)]) {
      line.cls = MARKS[raw.charAt(25)];
      line.time = raw.slice(11, 19);
      line.text = raw.slice(26);
      if (line.text.charAt(0) === ' ') line.text = line.text.slice(1);
    }
    return line;
  }

  // fillLine gives el the time and text of a parsed line.
  function fillLine(el, line) {
    el.className = 'ln ' + line.cls;
    el.textContent = '';
    var ts = document.createElement('span');
    ts.className = 'ts';
    ts.textContent = line.time;
    var tx = document.createElement('span');
    tx.className = 'tx';
    ansi(tx, line.text);
    el.appendChild(ts);
    el.appendChild(tx);
    return el;
  }

  // logLine builds the element of a parsed line, as the server does for
  // the lines it renders.
  function logLine(line) {
    return fillLine(document.createElement('div'), line);
  }

  // folder folds live lines the way the server folds the tail: the lines
  // of a checkout, from the status line that opens it to the one that
  // closes it, go into a <details> whose summary is the closing line.
  function folder(log) {
    var begin = log.getAttribute('data-fold-begin');
    var ends = [log.getAttribute('data-fold-done'), log.getAttribute('data-fold-failed')];
    var starts = function (text, prefix) { return !!prefix && text.lastIndexOf(prefix, 0) === 0; };
    var open = log.querySelector('details.fold[data-open]');
    return {
      // add puts one parsed line into parent (the log, or a fragment
      // bound for it) or into the open checkout.
      add: function (parent, line) {
        if (open && !log.contains(open) && open.parentNode !== parent) open = null; // trimmed away
        var status = line.cls === 's';
        if (!open && status && starts(line.text, begin)) {
          open = document.createElement('details');
          open.className = 'fold';
          open.open = true;
          open.setAttribute('data-open', '');
          open.appendChild(fillLine(document.createElement('summary'), line));
          open.appendChild(logLine(line));
          parent.appendChild(open);
        } else if (open && status && (starts(line.text, ends[0]) || starts(line.text, ends[1]))) {
          fillLine(open.querySelector('summary'), line);
          open.open = false;
          open.removeAttribute('data-open');
          open = null;
        } else {
          (open || parent).appendChild(logLine(line));
        }
      }
    };
  }

  function preference(name, fallback) {
    try { return localStorage.getItem('mixmaster.' + name) || fallback; } catch (e) { return fallback; }
  }

  function remember(name, value) {
    try { localStorage.setItem('mixmaster.' + name, value); } catch (e) { /* private mode */ }
  }

  // logView colours the rendered tail and appends live lines from the
  // log stream, which continues exactly where the tail ends.
  function logView(log) {
    var showTs = document.getElementById('show-ts');
    var follow = document.getElementById('follow');
    var state = document.getElementById('log-state');
    var jobStatus = document.getElementById('job-status');

    if (showTs) {
      showTs.checked = preference('timestamps', 'on') === 'on';
      var applyTs = function () { log.classList.toggle('no-ts', !showTs.checked); };
      applyTs();
      showTs.addEventListener('change', function () {
        applyTs();
        remember('timestamps', showTs.checked ? 'on' : 'off');
      });
    }

    var txs = log.getElementsByClassName('tx');
    for (var i = 0; i < txs.length; i++) {
      var t = txs[i].textContent;
      if (t.indexOf('\x1b') >= 0) {
        txs[i].textContent = '';
        ansi(txs[i], t);
      }
    }

    var scrolling = false;
    var toBottom = function () {
      scrolling = true;
      log.scrollTop = log.scrollHeight;
    };
    toBottom();
    // Scrolling up stops following; scrolling back down resumes it.
    log.addEventListener('scroll', function () {
      if (scrolling) { scrolling = false; return; }
      if (follow) follow.checked = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    });
    if (follow) follow.addEventListener('change', function () { if (follow.checked) toBottom(); });

    var url = log.getAttribute('data-stream');
    if (!url || !window.EventSource) return;

    var queue = [], scheduled = false, trimmed = false, fold = folder(log);
    var say = function (msg) { if (state) state.textContent = msg; };

    // trim tells, once, that the page dropped its oldest lines.
    var trim = function () {
      if (trimmed) return;
      trimmed = true;
      var note = document.createElement('p');
      note.className = 'muted log-note';
      note.textContent = 'Earlier lines were removed from this page; the full log has them.';
      log.parentNode.insertBefore(note, log);
    };

    // flush appends the queued lines, at most about ten times a second
    // however fast they come: each append costs a layout of the log.
    var lastFlush = 0;
    var flush = function () {
      scheduled = false;
      lastFlush = performance.now();
      if (!queue.length) return;
      var lines = queue;
      queue = [];
      if (lines.length >= MAX_LINES) {
        // The batch alone fills the page: the lines shown now all go.
        lines = lines.slice(lines.length - MAX_LINES);
        log.textContent = '';
        trim();
      }
      var frag = document.createDocumentFragment();
      for (var i = 0; i < lines.length; i++) fold.add(frag, parseLine(lines[i]));
      log.appendChild(frag);
      var extra = log.childElementCount - MAX_LINES;
      if (extra > 0) {
        var range = document.createRange();
        range.setStartBefore(log.firstElementChild);
        range.setEndAfter(log.children[extra - 1]);
        range.deleteContents();
        trim();
      }
      say('');
      if (!follow || follow.checked) toBottom();
    };

    var started = statusOf(jobStatus) !== 'queued';
    var es = new EventSource(url);
    es.onmessage = function (e) {
      queue.push(e.data);
      // Between frames (or in a hidden tab, which gets none) keep only
      // what the page would keep; trimming in halves keeps it cheap.
      if (queue.length >= 2 * MAX_LINES) {
        queue = queue.slice(queue.length - MAX_LINES);
        trim();
      }
      if (!scheduled) {
        scheduled = true;
        setTimeout(function () { requestAnimationFrame(flush); },
          Math.max(0, 100 - (performance.now() - lastFlush)));
      }
      if (!started) {
        started = true;
        setBadge(jobStatus, 'running');
      }
    };
    es.onopen = function () { if (state && state.textContent === 'Reconnecting…') say(''); };
    es.onerror = function () {
      // EventSource reconnects by itself, sending Last-Event-ID, unless
      // the server refused the stream.
      say(es.readyState === EventSource.CLOSED
        ? 'The live log stopped. Reload the page to continue.'
        : 'Reconnecting…');
    };
    es.addEventListener('end', function (e) {
      es.close();
      flush();
      setBadge(jobStatus, e.data);
      say((log.childElementCount ? '' : 'This job printed nothing. ') + 'The job ' + e.data + '.');
      refreshDetails();
    });
  }

  // refreshDetails reloads the parts of a job page that change when the
  // job ends (times, exit code, buttons, artifacts), keeping the log.
  function refreshDetails() {
    fetch(location.href, { credentials: 'same-origin', headers: { Accept: 'text/html' } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        ['summary', 'job-actions'].forEach(function (id) {
          var now = document.getElementById(id), next = doc.getElementById(id);
          if (now && next) now.replaceWith(document.adoptNode(next));
        });
        var art = doc.getElementById('artifacts');
        var logSection = document.getElementById('log-section');
        if (art && !document.getElementById('artifacts') && logSection) {
          logSection.parentNode.insertBefore(document.adoptNode(art), logSection);
        }
        localTimes(document);
      })
      .catch(function () { /* the page still shows the final status */ });
  }

  // paramRows lets the artifact build form grow.
  function paramRows() {
    var add = document.getElementById('add-param');
    var rows = document.getElementById('param-rows');
    if (!add || !rows) return;
    add.hidden = false;
    add.addEventListener('click', function () {
      var last = rows.lastElementChild;
      if (!last) return;
      var row = last.cloneNode(true);
      var inputs = row.querySelectorAll('input');
      for (var i = 0; i < inputs.length; i++) inputs[i].value = '';
      rows.appendChild(row);
      inputs[0].focus();
    });
  }

  function start() {
    localTimes(document);
    var lists = document.querySelectorAll('.live[data-events]');
    for (var i = 0; i < lists.length; i++) liveList(lists[i]);
    var log = document.getElementById('log');
    if (log) logView(log);
    paramRows();
    tickDurations();
    setInterval(tickDurations, 1000);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
