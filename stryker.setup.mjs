// Loaded into every test process of a mutation run (stryker.config.mjs, `--import`): a property
// that fails under a mutant has done its job, so fast-check stops at the first counterexample
// instead of shrinking it, which can take longer than the test itself. Plain `npm test` still shrinks.
import fc from 'fast-check';

fc.configureGlobal({ ...fc.readConfigureGlobal(), endOnFailure: true });
