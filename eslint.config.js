import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  // Stryker's sandboxes and reports are copies and generated output, not our code.
  { ignores: ['node_modules/**', '.stryker-tmp/**', 'reports/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
);
