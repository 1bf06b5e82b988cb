// Classify texts with transformers.js (@huggingface/transformers, onnxruntime-node) from a kdkit export folder,
// offline: the model is read from disk, nothing from the Hugging Face Hub.
//
//   node classify.mjs REQUEST.json   ->  JSON on stdout
//
// REQUEST: {"model": "/path/to/export", "dtypes": ["fp32", "q8"], "texts": [...], "pairs": [...] | null}
// Output:  {"fp32": {"labels": [...], "scores": [...], "logits": [[...], ...], "version": "4.3.1"}, "q8": {...}}
//
// Single texts go through the text-classification pipeline (what a user calls), one text per call (int8
// quantises activations per call, so batch composition would move its logits); the logits come from the
// model itself. Sentence pairs go through the tokenizer's text_pair option (the pipeline takes single texts).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { AutoModelForSequenceClassification, AutoTokenizer, env, pipeline } from '@huggingface/transformers';

const request = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const folder = path.resolve(request.model);
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = path.dirname(folder) + path.sep;
env.useFSCache = false;
const name = path.basename(folder);
const tokenizer = await AutoTokenizer.from_pretrained(name);

function softmaxTop(row) {
    const best = row.indexOf(Math.max(...row));
    const total = row.map((v) => Math.exp(v - row[best])).reduce((a, b) => a + b, 0);
    return [best, 1 / total];
}

async function classify(dtype) {
    const options = { dtype, device: 'cpu' };
    const model = await AutoModelForSequenceClassification.from_pretrained(name, options);
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
            const [best, score] = softmaxTop(row);
            labels.push(model.config.id2label[best]);
            scores.push(score);
        }
    } else {
        const classifier = await pipeline('text-classification', name, options);
        for (const text of request.texts) {
            const [top] = await classifier(text);
            labels.push(top.label);
            scores.push(top.score);
        }
    }
    return { labels, scores, logits, version: env.version };
}

const results = {};
for (const dtype of request.dtypes) {
    results[dtype] = await classify(dtype);
}
process.stdout.write(JSON.stringify(results) + '\n');
