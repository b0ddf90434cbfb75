'use strict';
// The agent console: one stream per question, reading status, log, token, response and error events. It is opened
// with the browser's EventSource (a GET of a resumable run, which survives a dropped connection), or, with "POST"
// ticked, with fetch() through express-sse-context/client's readEvents(), which can send the question as a JSON body.
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $('ask-form');
  const input = $('message');
  const sendButton = $('send');
  const stopButton = $('stop');
  const dropButton = $('drop');
  const connection = $('connection');
  const banner = $('error-banner');
  const bannerMessage = $('error-message');
  const progress = $('progress');
  const progressFill = $('progress-fill');
  const progressLabel = $('progress-label');
  const steps = Array.from(document.querySelectorAll('#steps li'));
  const answerText = $('answer-text');
  const log = $('log');
  const logCount = $('log-count');
  const usePost = $('use-post');

  const STATE_LABELS = { idle: 'Idle', running: 'Streaming', done: 'Done', stopped: 'Stopped', error: 'Failed' };

  /** The running question's stream (an EventSource, or the POST reader's `{ close }`), if one is running. */
  let source = null;
  /** The resumable run of the running GET question: its stream URL and the id of the last event received. */
  let run = null;
  /** express-sse-context/client, imported on first use (a module, served by the demo with an import map). */
  let client = null;
  let lines = 0;

  function setState(state) {
    document.body.dataset.state = state;
    connection.dataset.state = state;
    connection.textContent = STATE_LABELS[state];
    const running = state === 'running';
    sendButton.disabled = running;
    stopButton.disabled = !running;
    dropButton.disabled = !running || run === null;
  }

  function setProgress(percent, step) {
    const value = Math.max(0, Math.min(100, Math.round(percent)));
    progress.setAttribute('aria-valuenow', String(value));
    progressFill.style.width = `${value}%`;
    progressLabel.textContent = `${value}%`;
    const current = steps.findIndex((li) => li.dataset.step === step);
    steps.forEach((li, index) => {
      const done = step === 'done' || (current >= 0 && index < current);
      li.classList.toggle('done', done);
      li.classList.toggle('active', !done && index === current);
    });
  }

  function formatTime(timestamp) {
    const date = timestamp ? new Date(timestamp) : new Date();
    if (Number.isNaN(date.getTime())) return '';
    return date.toLocaleTimeString([], { hour12: false }) + '.' + String(date.getMilliseconds()).padStart(3, '0');
  }

  const HIDDEN_FIELDS = new Set(['type', 'level', 'message', 'timestamp']);

  /** Appends one log line; everything is set as text, never as HTML. */
  function addLogLine(level, message, record) {
    const item = document.createElement('li');
    item.className = `log-line level-${String(level).replace(/[^a-z]/gi, '')}`;
    const time = document.createElement('time');
    time.textContent = formatTime(record && record.timestamp);
    const badge = document.createElement('span');
    badge.className = 'level';
    badge.textContent = level;
    const body = document.createElement('span');
    body.className = 'body';
    const text = document.createElement('span');
    text.className = 'message';
    text.textContent = message;
    body.append(text);
    const fields = record ? Object.keys(record).filter((key) => !HIDDEN_FIELDS.has(key)) : [];
    if (fields.length > 0) {
      const extra = document.createElement('span');
      extra.className = 'fields';
      extra.textContent = fields.map((key) => `${key}=${typeof record[key] === 'string' ? record[key] : JSON.stringify(record[key])}`).join(' ');
      body.append(' ', extra);
    }
    item.append(time, badge, body);
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    log.append(item);
    if (atBottom) log.scrollTop = log.scrollHeight;
    lines += 1;
    logCount.textContent = String(lines);
    document.body.classList.add('has-log');
  }

  function showError(message) {
    bannerMessage.textContent = message;
    banner.hidden = false;
  }

  function reset() {
    banner.hidden = true;
    bannerMessage.textContent = '';
    answerText.textContent = '';
    log.replaceChildren();
    lines = 0;
    logCount.textContent = '0';
    document.body.classList.remove('has-log', 'has-answer');
    setProgress(0, null);
  }

  function finish(state) {
    if (source) source.close();
    source = null;
    run = null;
    setState(state);
  }

  function handle(event) {
    if (event.data === '[DONE]') {
      // Closing here keeps EventSource from reconnecting, which would run the agent again.
      finish(document.body.dataset.state === 'error' ? 'error' : 'done');
      return;
    }
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    switch (data.type) {
      case 'status':
        setProgress(data.progress, data.step);
        break;
      case 'log':
        addLogLine(data.level || 'info', data.message ?? '', data);
        break;
      case 'token':
        answerText.append(data.text);
        document.body.classList.add('has-answer');
        break;
      case 'response':
        answerText.textContent = data.content;
        document.body.classList.add('has-answer');
        break;
      case 'error':
        showError(data.message);
        setState('error');
        break;
    }
  }

  function ask(message) {
    if (source) source.close();
    reset();
    run = usePost.checked ? null : { id: crypto.randomUUID(), message, lastEventId: '' };
    setState('running');
    if (run === null) askWithPost(message);
    else follow(run);
  }

  /**
   * Opens (or reopens) the EventSource of a resumable run. The server keeps the run going without us; EventSource's
   * own reconnections send `Last-Event-ID`, and a reopened one passes it as `?lastEventId=`: either way the server
   * sends only the events this page has not seen.
   */
  function follow(current) {
    const query = new URLSearchParams({ message: current.message });
    if (current.lastEventId !== '') query.set('lastEventId', current.lastEventId);
    const events = new EventSource(`/chat/runs/${current.id}/stream?${query}`);
    source = events;
    events.onopen = () => {
      if (run === current) connection.textContent = STATE_LABELS.running;
    };
    events.onmessage = (event) => {
      if (event.lastEventId !== '') current.lastEventId = event.lastEventId;
      handle(event);
    };
    events.onerror = () => {
      if (source !== events) return;
      // CONNECTING: EventSource reconnects by itself and resumes; CLOSED: it gave up (the server is gone).
      if (events.readyState === EventSource.CONNECTING) {
        connection.textContent = 'Reconnecting…';
        return;
      }
      showError('Lost the connection to the server.');
      finish('error');
    };
  }
  /** The same question as a POST with a JSON body, read with readEvents(): what EventSource cannot do. */
  async function askWithPost(message) {
    const controller = new AbortController();
    // Stop, or the next question, aborts the fetch: the connection closes and the server's res.sse.signal aborts.
    const own = { close: () => controller.abort() };
    source = own;
    try {
      client ??= await import('/vendor/express-sse-context/client/index.js');
      const events = client.readEvents('/chat/stream', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message }),
        done: '[DONE]',
        signal: controller.signal,
      });
      // readEvents() ends the loop at [DONE] without yielding it.
      for await (const event of events) handle(event);
      if (source === own) finish(document.body.dataset.state === 'error' ? 'error' : 'done');
    } catch (error) {
      if (controller.signal.aborted || source !== own) return; // stopped, or replaced by the next question
      showError(
        error && error.name === 'SseResponseError'
          ? `The server answered ${error.status}: ${error.body}`
          : 'Lost the connection to the server.',
      );
      finish('error');
    }
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const message = input.value.trim();
    if (message === '') {
      input.focus();
      return;
    }
    ask(message);
  });

  stopButton.addEventListener('click', () => {
    if (!source) return;
    // A resumable run outlives its connection, so it is stopped explicitly (abortRun() on the server); a POST
    // stream stops when its connection closes. Either way res.sse.signal aborts on the server and the agent stops.
    if (run !== null) void fetch(`/chat/runs/${run.id}/stop`, { method: 'POST' });
    finish('stopped');
    addLogLine('page', 'You stopped the agent. The server aborts its work.', null);
  });

  dropButton.addEventListener('click', () => {
    const current = run;
    if (current === null || !source) return;
    // What a network switch does to a phone: the connection is gone, the agent on the server goes on.
    source.close();
    source = { close() {} };
    connection.textContent = 'Offline';
    addLogLine('page', `Connection dropped. Reconnecting after event ${current.lastEventId || '(none)'}…`, null);
    setTimeout(() => {
      if (run === current) follow(current);
    }, 800);
  });

  document.querySelectorAll('[data-example]').forEach((chip) => {
    chip.addEventListener('click', () => {
      input.value = chip.dataset.example;
      form.requestSubmit();
    });
  });
})();
