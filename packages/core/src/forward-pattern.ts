/**
 * How a transformer block is called and what it returns. `h` is the hidden (image / video)
 * stream, `e` the encoder (text) stream; any further arguments (temb, rotary embeddings,
 * masks) pass through unchanged to every block.
 */
export enum ForwardPattern {
  /** block(h, e, ...rest) -> [h, e] */
  Pattern_0 = 0,
  /** block(h, e, ...rest) -> [e, h] */
  Pattern_1 = 1,
  /** block(h, e, ...rest) -> h (e passes on unchanged) */
  Pattern_2 = 2,
  /** block(h, ...rest) -> h */
  Pattern_3 = 3,
  /** block(h, ...rest) -> [h, e] (e is produced by each block, not fed to the next) */
  Pattern_4 = 4,
  /** block(h, ...rest) -> [e, h] */
  Pattern_5 = 5,
}

export interface PatternShape {
  /** The block's second argument is the encoder stream. */
  readonly takesEncoder: boolean;
  /** The block returns a pair that includes an encoder stream. */
  readonly returnsEncoder: boolean;
  /** In a returned pair, the hidden stream comes first. */
  readonly hiddenFirst: boolean;
}

const SHAPES: Record<ForwardPattern, PatternShape> = {
  [ForwardPattern.Pattern_0]: { takesEncoder: true, returnsEncoder: true, hiddenFirst: true },
  [ForwardPattern.Pattern_1]: { takesEncoder: true, returnsEncoder: true, hiddenFirst: false },
  [ForwardPattern.Pattern_2]: { takesEncoder: true, returnsEncoder: false, hiddenFirst: true },
  [ForwardPattern.Pattern_3]: { takesEncoder: false, returnsEncoder: false, hiddenFirst: true },
  [ForwardPattern.Pattern_4]: { takesEncoder: false, returnsEncoder: true, hiddenFirst: true },
  [ForwardPattern.Pattern_5]: { takesEncoder: false, returnsEncoder: true, hiddenFirst: false },
};

export function patternShape(pattern: ForwardPattern): PatternShape {
  const shape = SHAPES[pattern];
  if (!shape) throw new TypeError(`unknown ForwardPattern ${String(pattern)}; use ForwardPattern.Pattern_0 .. Pattern_5`);
  return shape;
}

export function patternName(pattern: ForwardPattern): string {
  return ForwardPattern[pattern] ?? String(pattern);
}
