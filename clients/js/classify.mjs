// Classify texts with transformers.js (@huggingface/transformers, onnxruntime-node) from a kdkit export folder,
// offline: the model is read from disk, nothing from the Hugging Face Hub.
//
//   node classify.mjs REQUEST.json   ->  JSON on stdout
//
// REQUEST: {"model": "/path/to/export", "dtype": "fp32" | "q8", "texts": [...], "pairs": [...] | null}
// Output:  {"labels": [...], "scores": [...], "logits": [[...], ...], "version": "4.3.1"}
//
// Single texts go through the text-classification pipeline (what a user calls), one text per call (int8
// quantises activations per call, so batch composition would move its logits); the logits come from the
// model itself. Sentence pairs go through the tokenizer's text_pair option (the pipeline takes single texts).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
    AutoModelForSequenceClassification,
    AutoTokenizer,
    env,
    pipeline,
} from '@huggingface/transformers';

const request = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const folder = path.resolve(request.model);
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = path.dirname(folder) + path.sep;
env.useFSCache = false;
const name = path.basename(folder);
const options = { dtype: request.dtype, device: 'cpu' };

const tokenizer = await AutoTokenizer.from_pretrained(name);
const model = await AutoModelForSequenceClassification.from_pretrained(name, options);
const id2label = model.config.id2label;

const logits = [];
for (let i = 0; i < request.texts.length; i++) {
    const encoding = request.pairs
        ? tokenizer(request.texts[i], { text_pair: request.pairs[i], truncation: true })
        : tokenizer(request.texts[i], { truncation: true });
    const output = await model(encoding);
    logits.push(Array.from(output.logits.data));
}

const labels = [];
const scores = [];
if (request.pairs) {
    for (const row of logits) {
        const best = row.indexOf(Math.max(...row));
        const exp = row.map((v) => Math.exp(v - row[best]));
        labels.push(id2label[best]);
        scores.push(1 / exp.reduce((a, b) => a + b, 0));
    }
} else {
    const classify = await pipeline('text-classification', name, options);
    for (const text of request.texts) {
        const [top] = await classify(text);
        labels.push(top.label);
        scores.push(top.score);
    }
}
process.stdout.write(JSON.stringify({ labels, scores, logits, version: env.version }) + '\n');
