// tokenizer.json `post_processor` section: the special tokens wrapped around one sequence
// (CLIP: <|startoftext|> ... <|endoftext|>; T5: ... </s>).
import { TokenizerError } from '../errors.js';

/** The ids that go before and after a single sequence's tokens. */
export interface SpecialTokenFrame {
  before: number[];
  after: number[];
}

type Json = Record<string, unknown>;

const pairId = (value: unknown, where: string): number => {
  if (Array.isArray(value) && typeof value[1] === 'number') return value[1];
  throw new TokenizerError(`${where}: expected [token, id], got ${JSON.stringify(value)}`);
};

/** The frame of a single sequence (no special tokens when there is no post-processor). */
export function buildPostProcessor(spec: unknown, where: string): SpecialTokenFrame {
  if (spec === null || spec === undefined) return { before: [], after: [] };
  const s = spec as Json;
  switch (s.type) {
    case 'RobertaProcessing':
    case 'BertProcessing':
      return { before: [pairId(s.cls, `${where}.cls`)], after: [pairId(s.sep, `${where}.sep`)] };
    case 'TemplateProcessing': {
      const specials = (s.special_tokens ?? {}) as Record<string, { ids?: number[] }>;
      const frame: SpecialTokenFrame = { before: [], after: [] };
      let seenSequence = false;
      for (const item of s.single as Json[]) {
        if (item.Sequence) {
          if (seenSequence) throw new TokenizerError(`${where}: the single template holds the sequence twice`);
          seenSequence = true;
        } else if (item.SpecialToken) {
          const name = (item.SpecialToken as { id: string }).id;
          const ids = specials[name]?.ids;
          if (!ids) throw new TokenizerError(`${where}: the template names ${JSON.stringify(name)}, which special_tokens does not define`);
          (seenSequence ? frame.after : frame.before).push(...ids);
        } else throw new TokenizerError(`${where}: template item ${JSON.stringify(item)} is neither Sequence nor SpecialToken`);
      }
      return frame;
    }
    case 'Sequence': {
      const frames = (s.processors as unknown[]).map((p, i) => buildPostProcessor(p, `${where}.processors[${i}]`));
      return { before: frames.flatMap((f) => f.before), after: frames.flatMap((f) => f.after) };
    }
    // Byte-level offset trimming changes no ids.
    case 'ByteLevel':
      return { before: [], after: [] };
    default:
      throw new TokenizerError(
        `${where}: post-processor type ${JSON.stringify(s.type)} is not supported (supported: TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence)`,
      );
  }
}
