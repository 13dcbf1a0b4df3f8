// Ward console: progressive enhancement only. Every page works without it;
// it adds copy buttons, live task output and the one-click sign-in link.
'use strict';

// A sign-in link posts its secret back as soon as the page has loaded (a
// link preview, which runs no script, never uses it up).
window.addEventListener('load', () => {
  const auto = document.querySelector('form[data-autosubmit]');
  if (auto) auto.submit();
});

document.addEventListener('DOMContentLoaded', () => {
  for (const b of document.querySelectorAll('button[data-copy]')) {
    b.hidden = false;
    b.addEventListener('click', async () => {
      const el = document.getElementById(b.dataset.copy);
      const text = el.textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
        b.textContent = 'Copied';
      } catch (e) {
        const range = document.createRange();
        range.selectNodeContents(el);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        b.textContent = 'Selected: press Ctrl+C';
      }
    });
  }

  const out = document.getElementById('output');
  if (out && out.dataset.events) follow(out);
});

// follow streams a job's output (server-sent events from the coordinator's
// log follower) into the output box, prefixing lines with their task when
// every task is shown.
function follow(out) {
  const status = document.getElementById('output-status');
  const prefix = out.dataset.prefix === '1';
  const partial = new Map();
  const es = new EventSource(out.dataset.events);
  const append = (text, stream) => {
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    const span = document.createElement('span');
    if (stream === 'stderr') span.className = 'stderr';
    span.textContent = text;
    out.appendChild(span);
    if (atBottom) out.scrollTop = out.scrollHeight;
  };
  const chunk = (c) => {
    if (!prefix) { append(c.data || '', c.stream); return; }
    const lines = ((partial.get(c.task) || '') + (c.data || '')).split('\n');
    partial.set(c.task, lines.pop());
    if (lines.length) append(lines.map((l) => '[' + c.task + '] ' + l + '\n').join(''), c.stream);
  };
  es.addEventListener('chunk', (e) => chunk(JSON.parse(e.data)));
  es.addEventListener('progress', (e) => showProgress(JSON.parse(e.data)));
  es.addEventListener('end', (e) => {
    es.close();
    for (const [task, rest] of partial) if (rest) append('[' + task + '] ' + rest + '\n');
    const end = JSON.parse(e.data);
    if (end.data) append(end.data + '\n', 'stderr');
    status.textContent = 'The job ended: ' + end.job_state + (end.failed ? ' (' + end.failed + ' task(s) did not complete)' : '') + '. Reload for the final task states.';
    status.dataset.state = end.job_state;
  });
  es.addEventListener('failure', (e) => {
    es.close();
    const err = JSON.parse(e.data);
    status.textContent = 'Output unavailable: ' + err.message + (err.fix ? ' Fix: ' + err.fix : '');
  });
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED || status.dataset.state) return;
    es.close();
    status.textContent = 'The output stream was interrupted. Reload the page to follow it again.';
  };
}

// showProgress updates the job page's counts from a "progress" event.
function showProgress(p) {
  for (const k of ['done', 'failed', 'running', 'queued']) {
    const el = document.getElementById('progress-' + k);
    if (el) el.textContent = String(p[k]);
  }
  const bar = document.querySelector('#progress progress');
  if (bar) {
    bar.max = p.total;
    bar.value = p.done + p.failed;
    bar.textContent = (p.done + p.failed) + ' of ' + p.total;
  }
}
