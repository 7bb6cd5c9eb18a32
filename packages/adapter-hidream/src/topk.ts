// Which k of n routing scores a token keeps, picked exactly as torch.topk(scores, k, sorted=False)
// picks them on the CPU, ties included. In float32 the scores of HiDream's gate almost never tie,
// but in bfloat16 / float16 a softmax over a few experts often rounds the k-th and the (k+1)-th
// score to the same value, and torch's choice then comes from the order in which its selection
// algorithm visits them: for k * 64 > n torch runs std::nth_element, otherwise std::partial_sort,
// both libstdc++'s (introselect and heap select), on (value, index) pairs compared by value alone
// (a NaN counts as the largest). This is a port of those algorithms, so a token goes to the
// experts it goes to in diffusers.

interface Entry {
  value: number;
  index: number;
}

/** torch's comparator for largest-first selection: NaN first, then greater values. */
function before(x: Entry, y: Entry): boolean {
  return (Number.isNaN(x.value) && !Number.isNaN(y.value)) || x.value > y.value;
}

function swap(q: Entry[], a: number, b: number): void {
  const t = q[a];
  q[a] = q[b];
  q[b] = t;
}

// libstdc++'s heap primitives (bits/stl_heap.h), on q[first, first + len).
function pushHeap(q: Entry[], first: number, hole: number, top: number, value: Entry): void {
  let parent = Math.floor((hole - 1) / 2);
  while (hole > top && before(q[first + parent], value)) {
    q[first + hole] = q[first + parent];
    hole = parent;
    parent = Math.floor((hole - 1) / 2);
  }
  q[first + hole] = value;
}

function adjustHeap(q: Entry[], first: number, hole: number, len: number, value: Entry): void {
  const top = hole;
  let child = hole;
  while (child < Math.floor((len - 1) / 2)) {
    child = 2 * (child + 1);
    if (before(q[first + child], q[first + child - 1])) child--;
    q[first + hole] = q[first + child];
    hole = child;
  }
  if ((len & 1) === 0 && child === Math.floor((len - 2) / 2)) {
    child = 2 * (child + 1);
    q[first + hole] = q[first + child - 1];
    hole = child - 1;
  }
  pushHeap(q, first, hole, top, value);
}

function makeHeap(q: Entry[], first: number, last: number): void {
  const len = last - first;
  if (len < 2) return;
  for (let parent = Math.floor((len - 2) / 2); ; parent--) {
    adjustHeap(q, first, parent, len, q[first + parent]);
    if (parent === 0) return;
  }
}

function popHeap(q: Entry[], first: number, last: number, result: number): void {
  const value = q[result];
  q[result] = q[first];
  adjustHeap(q, first, 0, last - first, value);
}

function heapSelect(q: Entry[], first: number, middle: number, last: number): void {
  makeHeap(q, first, middle);
  for (let i = middle; i < last; ++i) if (before(q[i], q[first])) popHeap(q, first, middle, i);
}

// libstdc++'s introselect (bits/stl_algo.h).
function insertionSort(q: Entry[], first: number, last: number): void {
  if (first === last) return;
  for (let i = first + 1; i !== last; ++i) {
    const value = q[i];
    if (before(value, q[first])) {
      for (let j = i; j > first; --j) q[j] = q[j - 1];
      q[first] = value;
    } else {
      let hole = i;
      while (before(value, q[hole - 1])) {
        q[hole] = q[hole - 1];
        hole--;
      }
      q[hole] = value;
    }
  }
}

function moveMedianToFirst(q: Entry[], result: number, a: number, b: number, c: number): void {
  if (before(q[a], q[b])) {
    if (before(q[b], q[c])) swap(q, result, b);
    else if (before(q[a], q[c])) swap(q, result, c);
    else swap(q, result, a);
  } else if (before(q[a], q[c])) swap(q, result, a);
  else if (before(q[b], q[c])) swap(q, result, c);
  else swap(q, result, b);
}

function unguardedPartition(q: Entry[], first: number, last: number, pivot: number): number {
  for (;;) {
    while (before(q[first], q[pivot])) first++;
    last--;
    while (before(q[pivot], q[last])) last--;
    if (!(first < last)) return first;
    swap(q, first, last);
    first++;
  }
}

function nthElement(q: Entry[], nth: number): void {
  let first = 0;
  let last = q.length;
  let depth = 2 * Math.floor(Math.log2(last));
  while (last - first > 3) {
    if (depth === 0) {
      heapSelect(q, first, nth + 1, last);
      swap(q, first, nth);
      return;
    }
    depth--;
    const mid = first + Math.floor((last - first) / 2);
    moveMedianToFirst(q, first, first + 1, mid, last - 1);
    const cut = unguardedPartition(q, first + 1, last, first);
    if (cut <= nth) first = cut;
    else last = cut;
  }
  insertionSort(q, first, last);
}

function partialSort(q: Entry[], middle: number): void {
  heapSelect(q, 0, middle, q.length);
  for (let last = middle; last > 1; ) {
    last--;
    popHeap(q, 0, last, last);
  }
}

/**
 * The indices torch.topk(x, k, dim=-1, largest=True, sorted=False) returns for each of the
 * `rows` rows of `n` values in `values` (row-major): (rows * k) indices, row by row, in torch's
 * output order.
 */
export function torchTopkIndices(values: ArrayLike<number>, rows: number, n: number, k: number): Int32Array {
  if (!(Number.isInteger(k) && k >= 1 && k <= n)) throw new RangeError(`torchTopkIndices: k must be an integer in 1..${n}, got ${k}`);
  if (values.length !== rows * n) throw new RangeError(`torchTopkIndices: ${values.length} values for ${rows} rows of ${n}`);
  const out = new Int32Array(rows * k);
  const q: Entry[] = Array.from({ length: n }, () => ({ value: 0, index: 0 }));
  for (let r = 0; r < rows; ++r) {
    for (let j = 0; j < n; ++j) q[j] = { value: values[r * n + j], index: j };
    if (k * 64 <= n) partialSort(q, k);
    else nthElement(q, k - 1);
    for (let j = 0; j < k; ++j) out[r * k + j] = q[j].index;
  }
  return out;
}
