/** Turn a difference between desired and live state into the smallest UAPI and route changes. */
export * from './diff.ts';
export * from './reconciler.ts';
