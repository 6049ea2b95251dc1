// Mutation run of the decision modules (issue 9): `npm run mutate`. Stryker changes one thing at a
// time in these modules and checks that some test fails; a mutant no test notices is a behaviour
// nothing pins down. Only the pure unit tests of the modules run: no namespaces, no API server, so
// a run needs neither root nor the network. The TAP runner starts each test file with the `node`
// first on PATH; `npm run` puts node_modules/.bin first, so that is Node 24, which runs .ts directly.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  testRunner: 'tap',
  plugins: ['@stryker-mutator/tap-runner'],
  tap: {
    testFiles: [
      'native/addr.test.ts',
      'native/addr.mutants.test.ts',
      'native/uapi/codec.test.ts',
      'native/uapi/parse.test.ts',
      'native/keys/keys.test.ts',
      'native/keys/keys.mutants.test.ts',
      'mesh/reconcile/diff.test.ts',
      'mesh/topology/topology.test.ts',
      'mesh/topology/topology.mutants.test.ts',
      'mesh/topology/meship.mutants.test.ts',
      'mesh/topology/engine.test.ts',
      'mesh/topology/ranges.test.ts',
      'mesh/crd/validate.test.ts',
      'mesh/crd/validate.mutants.test.ts',
    ],
    nodeArgs: ['--test-reporter=tap', '--import', './stryker.setup.mjs', '-r', '{{hookFile}}', '{{testFile}}'],
  },
  mutate: [
    'native/addr.ts',
    'native/uapi/codec.ts',
    'mesh/reconcile/diff.ts',
    'native/keys/keys.ts',
    // The trust rules moved from topology.ts into rules.ts; engine.ts decides what a change reaches (issue 10).
    'mesh/topology/rules.ts',
    'mesh/topology/engine.ts',
    'mesh/topology/ranges.ts',
    'mesh/topology/meship.ts',
    'mesh/crd/validate.ts',
  ],
  coverageAnalysis: 'perTest',
  // Two cores shared with the rest of the team.
  concurrency: 2,
  // Later runs re-test only mutants in code or tests that changed (the file stays out of git).
  incremental: true,
  incrementalFile: 'reports/stryker-incremental.json',
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  // Below 90% the command fails.
  thresholds: { high: 90, low: 80, break: 90 },
  // A busy machine: do not mistake a slow test for a mutant that loops.
  timeoutMS: 10000,
};
