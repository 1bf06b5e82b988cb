// The page of 'kdkit web': classify and explain text with a kdkit export, in the browser.
//
// Everything it needs is in its folder, described by kdkit_web.json (kdkit/web_record.py): the model (model/,
// loaded with transformers.js on onnxruntime-web's WebAssembly backend), the task, the examples and the token used
// to occlude. Occlusion (kdkit/occlusion.py computes the same in Python, on the same ONNX file):
//   x = the token ids (special tokens included, truncated to max_length), run alone (batch 1);
//   c = the predicted class; every non-special position i in turn gets the occlusion token ([MASK]), attention
//   mask and token type ids unchanged; the copies run in position order, in batches of occlusion.batch_size;
//   score_i = p_c(x) - p_c(x with token i occluded)   (regression: y(x) - y(...)); special tokens score 0.
//
// For tests and scripts: window.kdkit = {ready, classify(text, pair), show(text, pair), setPrecision(name), timeline,
// record}; index.html?text=...&pair=...&precision=fp32 classifies that text once the page is ready.

const $ = (id) => document.getElementById(id);
const state = { record: null, T: null, tokenizer: null, models: {}, precision: null, vocab: [], runs: 0 };
// milliseconds since the page was opened (performance.now()): when it was ready, when it showed its first result
const timeline = { ready: null, first_result: null };

class PageError extends Error {
    constructor(what, fix) {
        super(what);
        this.fix = fix;
    }
}

function reason(error) {
    const text = String(error && error.message ? error.message : error);
    return text.split('\n')[0].slice(0, 400);
}

function showError(error, context) {
    const what = error instanceof PageError ? error.message : `${context}: ${reason(error)}`;
    const fix = error instanceof PageError ? error.fix : '';
    const box = $('error');
    box.hidden = false;
    box.textContent = `The model cannot be loaded. ${what}${fix ? `\nFix: ${fix}` : ''}`;
    $('status').textContent = 'Not ready: see the error above.';
    document.body.dataset.state = 'error';
}

async function fetchOk(url, what, method = 'GET') {
    let response;
    try {
        response = await fetch(url, { method, cache: 'no-cache' });
    } catch (error) {
        throw new PageError(`${what} (${url}) could not be fetched: ${reason(error)}.`,
            'serve this folder with a web server (python -m http.server 8000 in it) and open it through that server.');
    }
    if (!response.ok) {
        throw new PageError(`${what} (${url}) is missing or unreadable: HTTP ${response.status}.`,
            "serve the folder 'kdkit web' wrote, complete (make it again with kdkit web EXPORT --overwrite).");
    }
    return response;
}

async function loadRecord() {
    if (location.protocol === 'file:') {
        throw new PageError('This page was opened as a file: a browser does not let it read its model from disk.',
            'serve the folder: run python -m http.server 8000 in it (or kdkit web EXPORT --serve) and open http://localhost:8000/');
    }
    const response = await fetchOk('kdkit_web.json', "The page's record kdkit_web.json");
    try {
        return await response.json();
    } catch (error) {
        throw new PageError(`kdkit_web.json is not valid JSON: ${reason(error)}.`, 'make the page again with kdkit web EXPORT --overwrite.');
    }
}

async function loadTransformers(runtime) {
    const url = new URL(runtime.transformers, location.href).href;
    try {
        return await import(url);
    } catch (error) {
        const fix = runtime.source === 'cdn'
            ? 'this page was made with --cdn and needs internet access; for offline use make it without --cdn.'
            : 'make the page again (kdkit web EXPORT --overwrite): its vendor/ folder is incomplete.';
        throw new PageError(`transformers.js could not be loaded from ${url}: ${reason(error)}.`, fix);
    }
}

function configureRuntime(T, record) {
    const { env } = T;
    env.allowRemoteModels = false; // never the Hugging Face Hub
    env.allowLocalModels = true;
    env.useBrowserCache = false;
    env.localModelPath = new URL('./', location.href).pathname; // a path: transformers.js fetches it from this server
    const version = env.backends.onnx.versions?.web ?? '';
    const base = new URL(record.runtime.wasm_base.replace('{version}', version), location.href).href;
    const [mjs, wasm] = record.runtime.wasm_files;
    env.backends.onnx.wasm.wasmPaths = { mjs: base + mjs, wasm: base + wasm };
    env.backends.onnx.wasm.numThreads = 1; // a plain static server is not cross-origin isolated: no threads
    env.backends.onnx.wasm.proxy = false;
}

async function loadModel(name) {
    if (state.models[name]) return state.models[name];
    const info = state.record.models[name];
    if (!info) throw new PageError(`This page has no ${name} model.`, `choose one of: ${Object.keys(state.record.models).join(', ')}.`);
    await fetchOk(info.file, `The ${name} model`, 'HEAD');
    try {
        state.models[name] = await state.T.AutoModelForSequenceClassification.from_pretrained(
            state.record.model_folder, { dtype: info.dtype, device: 'wasm' });
    } catch (error) {
        throw new PageError(`${info.file} (${name}) could not be loaded: ${reason(error)}.`,
            'make the page again from a valid export (kdkit export RUN --onnx --quantize int8, then kdkit web EXPORT --overwrite).');
    }
    return state.models[name];
}

async function loadTokenizer() {
    const folder = state.record.model_folder;
    await fetchOk(`${folder}/tokenizer.json`, 'The tokenizer', 'HEAD');
    try {
        state.tokenizer = await state.T.AutoTokenizer.from_pretrained(folder);
    } catch (error) {
        throw new PageError(`${folder}/tokenizer.json could not be loaded: ${reason(error)}.`, 'make the page again from a valid export.');
    }
    for (const [token, id] of state.tokenizer.get_vocab()) state.vocab[id] = token;
}

// -- the computation ---------------------------------------------------------------------------------------

function encode(text, pair) {
    // A text longer than max_length is cut as kdkit predict (tokenizers) cuts it: the text, not the closing special
    // token ([SEP]), which transformers.js' own truncation drops. Pairs: transformers.js' truncation (docs/deploy.md).
    const max = state.record.max_length;
    const full = state.tokenizer(text, pair == null ? {} : { text_pair: pair });
    const length = full.input_ids.dims[1];
    if (length <= max) return { encoding: full, truncated: false };
    if (pair != null) return { encoding: state.tokenizer(text, { text_pair: pair, truncation: true }), truncated: true };
    const keepLast = state.record.occlusion.special_ids.includes(Number(full.input_ids.data[length - 1]));
    const encoding = {};
    for (const [name, tensor] of Object.entries(full)) {
        const data = new BigInt64Array(max);
        data.set(tensor.data.subarray(0, keepLast ? max - 1 : max));
        if (keepLast) data[max - 1] = tensor.data[length - 1];
        encoding[name] = new state.T.Tensor('int64', data, [1, max]);
    }
    return { encoding, truncated: true };
}

function softmax(row) {
    const top = Math.max(...row);
    const exps = row.map((v) => Math.exp(v - top));
    const total = exps.reduce((a, b) => a + b, 0);
    return exps.map((v) => v / total);
}

function targetValue(row, target, regression) {
    return regression ? row[0] : softmax(row)[target];
}

function repeated(tensor, count, positions, maskId) {
    const length = tensor.dims[1];
    const data = new BigInt64Array(count * length);
    for (let k = 0; k < count; k++) data.set(tensor.data, k * length);
    if (positions) positions.forEach((position, k) => { data[k * length + position] = BigInt(maskId); });
    return new state.T.Tensor('int64', data, [count, length]);
}

async function classify(text, pair = null) {
    const record = state.record;
    const model = await loadModel(state.precision);
    const regression = record.task.label_names == null;
    const start = performance.now();
    const { encoding, truncated } = encode(text, pair);
    const ids = Array.from(encoding.input_ids.data, Number);
    const logits = Array.from((await model(encoding)).logits.data);
    const classified = performance.now();
    const classes = regression ? 1 : logits.length;
    const target = regression ? 0 : logits.indexOf(Math.max(...logits));
    const original = targetValue(logits, target, regression);
    const special = new Set(record.occlusion.special_ids);
    const positions = ids.map((id, i) => (special.has(id) ? -1 : i)).filter((i) => i >= 0);
    const scores = ids.map(() => 0);
    for (let start = 0; start < positions.length; start += record.occlusion.batch_size) {
        const chunk = positions.slice(start, start + record.occlusion.batch_size);
        const inputs = {};
        for (const [name, tensor] of Object.entries(encoding)) {
            inputs[name] = repeated(tensor, chunk.length, name === 'input_ids' ? chunk : null, record.occlusion.id);
        }
        const rows = Array.from((await model(inputs)).logits.data);
        chunk.forEach((position, k) => {
            scores[position] = original - targetValue(rows.slice(k * classes, (k + 1) * classes), target, regression);
        });
    }
    const done = performance.now();
    const probabilities = regression ? [] : softmax(logits);
    return {
        precision: state.precision,
        label: regression ? null : record.task.label_names[target],
        value: original,
        probabilities: regression ? {} : Object.fromEntries(record.task.label_names.map((n, i) => [n, probabilities[i]])),
        logits,
        ids,
        tokens: ids.map((id) => state.vocab[id] ?? String(id)),
        occluded: ids.map((id) => !special.has(id)),
        scores,
        truncated,
        milliseconds: { classify: classified - start, occlusion: done - classified, total: done - start },
    };
}

// -- the page -------------------------------------------------------------------------------------------------

function tokenText(token) {
    if (token.startsWith('##')) return [token.slice(2), true];
    return [token.replaceAll('Ġ', '').replaceAll('▁', ''), false];
}

function renderHeatmap(result) {
    const box = $('heatmap');
    box.replaceChildren();
    const peak = Math.max(...result.scores.map(Math.abs)) || 1;
    result.tokens.forEach((token, i) => {
        const [text, joined] = tokenText(token);
        const span = document.createElement('span');
        const score = result.scores[i];
        span.textContent = text;
        span.dataset.score = String(score);
        span.style.marginLeft = joined ? '0' : '3px';
        if (!result.occluded[i]) {
            span.className = 'special';
            span.title = 'special token: not occluded';
        } else {
            const alpha = Math.round((Math.abs(score) / peak) * 1000) / 1000;
            span.style.background = score >= 0 ? `rgba(220, 40, 40, ${alpha})` : `rgba(40, 90, 220, ${alpha})`;
            span.title = `${score >= 0 ? '-' : '+'}${Math.abs(score).toFixed(4)} ${result.label == null ? 'output' : 'probability'} when hidden`;
        }
        box.append(span);
    });
}

function renderScores(result) {
    const table = $('scores');
    table.replaceChildren();
    for (const [name, p] of Object.entries(result.probabilities)) {
        const row = table.insertRow();
        row.className = name === result.label ? 'predicted' : '';
        row.insertCell().textContent = name;
        const value = row.insertCell();
        value.className = 'value';
        value.textContent = p.toFixed(4);
        const bar = document.createElement('span');
        bar.className = 'bar';
        bar.style.width = `${Math.round(p * 200)}px`;
        row.insertCell().append(bar);
    }
}

function render(result) {
    $('result').hidden = false;
    $('label').textContent = result.label ?? `${result.value.toFixed(4)} (regression output)`;
    const note = $('note');
    note.hidden = !result.truncated;
    note.textContent = result.truncated ? `The text is longer than ${state.record.max_length} tokens: it was cut there.` : '';
    renderScores(result);
    renderHeatmap(result);
    const ms = result.milliseconds;
    $('timing').textContent = `${ms.classify.toFixed(0)} ms to classify, ${ms.occlusion.toFixed(0)} ms for the heatmap (${result.precision})`;
    state.runs += 1;
    if (timeline.first_result === null) timeline.first_result = performance.now();
    document.body.dataset.runs = String(state.runs);
}

async function show(text, pair = null) {
    const result = await classify(text, pair);
    render(result);
    return result;
}

async function setPrecision(name) {
    $('classify').disabled = true;
    $('status').textContent = `Loading the ${name} model...`;
    await loadModel(name);
    state.precision = name;
    $('precision').value = name;
    $('classify').disabled = false;
    $('status').textContent = `Ready (${name}).`;
}

function isPair() {
    return (state.record.task.text_fields || []).length === 2;
}

async function onSubmit(event) {
    event.preventDefault();
    const text = $('text').value.trim();
    const pair = isPair() ? $('pair').value.trim() : null;
    if (!text || (isPair() && !pair)) {
        $('status').textContent = isPair() ? 'Type both texts first.' : 'Type a text first.';
        return;
    }
    $('classify').disabled = true;
    try {
        await show(text, pair);
        $('status').textContent = `Ready (${state.precision}).`;
    } catch (error) {
        $('status').textContent = `Could not classify: ${reason(error)}`;
    } finally {
        $('classify').disabled = false;
    }
}

function setUpPage(record) {
    const task = record.task;
    const labels = task.label_names ? task.label_names.join(', ') : 'a regression output';
    document.title = `${task.name}: kdkit student`;
    $('title').textContent = `${task.name} classifier (kdkit student)`;
    const fields = task.text_fields || ['text'];
    $('text-label').textContent = fields[0];
    if (fields.length === 2) {
        $('pair-box').hidden = false;
        $('pair-label').textContent = fields[1];
    }
    for (const name of Object.keys(record.models)) $('precision').append(new Option(`${name} (${(record.models[name].bytes / 1e6).toFixed(1)} MB)`, name));
    $('mask-token').textContent = record.occlusion.token;
    record.examples.forEach((example) => {
        const button = document.createElement('button');
        button.type = 'button';
        button.textContent = example.pair ? `${example.text} | ${example.pair}` : example.text;
        button.title = 'classify this example';
        button.onclick = () => {
            $('text').value = example.text;
            if (example.pair) $('pair').value = example.pair;
            $('form').requestSubmit();
        };
        $('examples').append(button);
    });
    $('footer').textContent = `Labels: ${labels}. Max length ${record.max_length} tokens. Made by kdkit ${record.kdkit_version} `
        + `on ${record.created_at}; transformers.js ${record.runtime.transformers_version} (${record.runtime.source}).`;
    $('form').addEventListener('submit', onSubmit);
    $('text').addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) $('form').requestSubmit(); });
    $('precision').addEventListener('change', (e) => setPrecision(e.target.value).catch((error) => showError(error, 'switching model')));
}

async function start() {
    const record = await loadRecord();
    state.record = record;
    setUpPage(record);
    $('status').textContent = 'Loading transformers.js...';
    state.T = await loadTransformers(record.runtime);
    configureRuntime(state.T, record);
    $('status').textContent = 'Loading the tokenizer and the model...';
    await loadTokenizer();
    const params = new URLSearchParams(location.search);
    const wanted = params.get('precision') || record.default_precision;
    await setPrecision(wanted);
    $('precision').disabled = false;
    timeline.ready = performance.now();
    document.body.dataset.state = 'ready';
    $('status').textContent = `Ready (${state.precision}): loaded in ${(timeline.ready / 1000).toFixed(1)} s.`;
    if (params.get('text')) {
        $('text').value = params.get('text');
        if (isPair()) $('pair').value = params.get('pair') || '';
        await show($('text').value, isPair() ? $('pair').value : null);
    }
    return timeline;
}

const ready = start();
ready.catch((error) => showError(error, 'the page could not start'));
window.kdkit = { ready, classify, show, setPrecision, timeline, get record() { return state.record; } };
