import neostandard from 'neostandard'

export default [
  ...neostandard({ ts: true, ignores: ['**/dist/**', '**/node_modules/**', '.data/**', '.tools/**', '.tap/**', '**/.tap/**'] }),
  // The console is a page: browser globals.
  { files: ['packages/comm-service/console/**/*.js'], languageOptions: { globals: { location: 'readonly', history: 'readonly', sessionStorage: 'readonly' } } }
]
