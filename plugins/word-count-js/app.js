// word_count: count the lines, words and characters of a text and list its most frequent words.
//
// An example third-party tool plugin for the `agent` host, written in JavaScript and built into
// a WASI preview-2 component with ComponentizeJS through jco (see README.md):
//
//     npx jco componentize app.js --wit ../../wit --world-name plugin -o word-count.wasm
//
// The component targets the world `plugin` in `wit/tool.wit`. The exported interface
// `agent:tool/tool` is the object exported as `tool` below; the imported interface
// `agent:tool/host` is imported by its full name. WIT names become camelCase
// (`input-schema` -> `inputSchema`), flags become objects of booleans, and a `result`'s error
// case is whatever the function throws: an object with a `payload` property, here a
// `tool-error` variant `{ tag, val }`, becomes `err(payload)`. Any other exception traps.
//
// The tool only computes: it needs no files, no environment and no network, so it needs no
// manifest (`word-count.toml`), and the host grants it nothing.

import { log } from 'agent:tool/host@0.1.0';

// The largest text accepted, in bytes of UTF-8.
const MAX_TEXT_BYTES = 1024 * 1024;

// How many of the most frequent words the answer lists.
const TOP_WORDS = 10;

// What separates words for `top_words`: whitespace, and punctuation and symbols other than
// the apostrophes and hyphens inside words such as "don't" and "well-known" (ASCII, Latin-1,
// general and CJK punctuation). ComponentizeJS's engine is built without ICU, so Unicode
// property escapes such as `\p{L}` are not available: a regex using one fails the build.
const SEPARATORS = /[\s!-&(-,.\/:-@\[-`{-~\u00A1-\u00BF\u00D7\u00F7\u2010-\u2018\u201A-\u205E\u3000-\u303F]+/u;

// Apostrophes and hyphens at the ends of a word: 'quoted' -> quoted, -flag -> flag.
const EDGE_MARKS = /^['’-]+|['’-]+$/gu;

// The JSON Schema of the input. The host checks every input against it before `call` runs,
// and passes the descriptions on to the model.
const INPUT_SCHEMA = {
  type: 'object',
  properties: {
    text: {
      type: 'string',
      description: `The text to count: not empty, at most ${MAX_TEXT_BYTES} bytes of UTF-8`,
    },
  },
  required: ['text'],
  additionalProperties: false,
};

// A failure to report to the model. ComponentizeJS turns the `payload` of a thrown value into
// the error case of `call`'s result: a `tool-error` case such as 'invalid-input' or 'internal'.
class ToolError extends Error {
  constructor(tag, message) {
    super(message);
    this.payload = { tag, val: message };
  }
}

export const tool = {
  describe() {
    return [
      {
        name: 'word_count',
        description:
          'Count the lines, words (whitespace-separated) and characters (Unicode code points) ' +
          'of a text, and list its ten most frequent words, case-insensitively. Returns JSON: ' +
          '{"lines", "words", "characters", "top_words": [[word, count], ...]}.',
        inputSchema: JSON.stringify(INPUT_SCHEMA),
        hints: { readOnly: true, destructive: false, idempotent: true },
      },
    ];
  },

  call(name, input, context) {
    if (name !== 'word_count') {
      throw new ToolError('invalid-input', `unknown tool \`${name}\``);
    }
    try {
      const { text } = JSON.parse(input);
      if (typeof text !== 'string') {
        throw new ToolError('invalid-input', '`text` must be a string');
      }
      log('debug', `word_count ${context.callId}: ${text.length} UTF-16 code units`);
      return JSON.stringify(wordCount(text));
    } catch (error) {
      if (error instanceof ToolError) throw error;
      // A bug: report it as `internal` rather than trapping, so the model sees the message.
      throw new ToolError('internal', `word_count failed: ${error}`);
    }
  },
};

function wordCount(text) {
  if (text.length === 0) {
    throw new ToolError('invalid-input', '`text` is empty: give the text to count');
  }
  const bytes = new TextEncoder().encode(text).length;
  if (bytes > MAX_TEXT_BYTES) {
    throw new ToolError(
      'invalid-input',
      `\`text\` has ${bytes} bytes, more than the ${MAX_TEXT_BYTES} this tool accepts: ` +
        'count it in parts, or with `wc` through the shell',
    );
  }

  const counts = new Map();
  for (const token of text.toLowerCase().split(SEPARATORS)) {
    const word = token.replace(EDGE_MARKS, '');
    if (word) counts.set(word, (counts.get(word) ?? 0) + 1);
  }
  // Most frequent first; ties in alphabetical order, so the same text gives the same answer.
  const topWords = [...counts]
    .sort(([a, m], [b, n]) => n - m || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, TOP_WORDS);

  return {
    // Lines as an editor shows them: a last line without a final newline counts too.
    lines: text.split('\n').length - (text.endsWith('\n') ? 1 : 0),
    words: text.split(/\s+/u).filter(Boolean).length,
    // Iterating a string yields code points, so an emoji counts as one character.
    characters: [...text].length,
    top_words: topWords,
  };
}
