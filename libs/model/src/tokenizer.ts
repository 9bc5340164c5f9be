import type { Manifest } from './manifest.js';

const WORD_V1 = /[a-z]+|[0-9]|[^\sa-z0-9]/g;

/** The `word-v1` tokenizer of docs/model-package.md, driven by the manifest's vocabulary. */
export class WordTokenizer {
  private readonly ids: Map<string, number>;
  readonly vocab: readonly string[];
  readonly special: Manifest['text']['special_tokens'];
  readonly locBins: Manifest['text']['loc_bins'];

  constructor(text: Manifest['text']) {
    this.vocab = text.vocab;
    this.special = text.special_tokens;
    this.locBins = text.loc_bins;
    this.ids = new Map(text.vocab.map((token, id) => [token, id]));
  }

  /** Splits text into words and maps them to ids; unknown words become `unk`. */
  encode(text: string): number[] {
    const words = text.toLowerCase().match(WORD_V1) ?? [];
    return words.map((word) => this.ids.get(word) ?? this.special.unk);
  }

  /** Words of the ids that are not in the vocabulary's special set. */
  unknownWords(text: string): string[] {
    const words = text.toLowerCase().match(WORD_V1) ?? [];
    return words.filter((word) => !this.ids.has(word));
  }

  decode(ids: readonly number[]): string {
    return ids.map((id) => this.vocab[id] ?? '[?]').join(' ');
  }

  /** Id of coordinate bin `bin` (0..count-1). */
  locId(bin: number): number {
    return this.locBins.first_id + bin;
  }
}
