// Bundles the upload page (Uppy and its CSS) into tusd_py/static/dist/, which the server
// serves at / (git-ignored, never committed: setup.py runs this when the package is built).
import { copyFile, mkdir, rm } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'

const here = (path) => fileURLToPath(new URL(path, import.meta.url))
const outdir = here('../../tusd_py/static/dist/')

await rm(outdir, { recursive: true, force: true })
await mkdir(outdir, { recursive: true })
await esbuild.build({
  entryPoints: { app: here('src/main.js') },
  bundle: true,
  minify: true,
  sourcemap: true,
  format: 'esm',
  target: ['es2022'],
  outdir,
  legalComments: 'linked',
  logLevel: 'warning',
})
await copyFile(here('src/index.html'), `${outdir}index.html`)
console.log(`built the upload page into ${outdir}`)
