// The upload page: Uppy's Dashboard (drag and drop, several files, per-file and total progress,
// pause/resume, retry), its Tus plugin (tus-js-client) and Golden Retriever (the files and their
// upload URLs survive a reload, and the uploads go on from the server's offset).
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import GoldenRetriever from '@uppy/golden-retriever'
import Tus from '@uppy/tus'

import '@uppy/core/css/style.min.css'
import '@uppy/dashboard/css/style.min.css'
import './page.css'

const MiB = 1024 * 1024
const params = new URLSearchParams(window.location.search)
const served = document.querySelector('meta[name="tus-endpoint"]')?.content
// ?endpoint= wins, so that a page on another origin can name the server; relative to this page.
const endpoint = new URL(params.get('endpoint') || served || '/files/', window.location.href).href
const chunkSize = Number(params.get('chunkSize')) || Infinity // default: one PATCH per file, like tus-js-client

const uppy = new Uppy({ id: 'tusd-py', debug: params.has('debug') })
  .use(Dashboard, {
    inline: true,
    target: '#uppy',
    width: '100%',
    height: 440,
    showProgressDetails: true,
    proudlyDisplayPoweredByUppy: false,
    note: 'Uploads resume where they stopped, even after a reload.',
  })
  .use(Tus, {
    endpoint,
    chunkSize,
    retryDelays: [0, 1000, 3000, 5000, 10000],
    removeFingerprintOnSuccess: true,
    limit: 3,
  })
  .use(GoldenRetriever, {
    // Keep big files' bytes in IndexedDB too (Uppy's default stops at 10 MiB), so a reload
    // needs nothing from the user; past these limits the file must be picked again and resumes.
    indexedDB: { maxFileSize: 2048 * MiB, maxTotalSize: 4096 * MiB },
  })

// Finished uploads of this browser, newest first, kept across reloads.
const FINISHED_KEY = `tusd-py:finished:${endpoint}`
const list = document.getElementById('finished')

function loadFinished() {
  try {
    return JSON.parse(window.localStorage.getItem(FINISHED_KEY)) || []
  } catch {
    return []
  }
}

function renderFinished() {
  const finished = loadFinished()
  list.replaceChildren(
    ...finished.map(({ name, size, url }) => {
      const item = document.createElement('li')
      const link = document.createElement('a')
      link.href = url
      link.textContent = name
      link.setAttribute('download', name)
      item.append(link, ` (${size.toLocaleString()} bytes)`)
      return item
    }),
  )
  document.getElementById('none').hidden = finished.length > 0
  document.getElementById('clear').hidden = finished.length === 0
}

uppy.on('upload-success', (file, response) => {
  const finished = loadFinished().filter((entry) => entry.url !== response.uploadURL)
  finished.unshift({ name: file.name, size: file.size, url: response.uploadURL, at: Date.now() })
  window.localStorage.setItem(FINISHED_KEY, JSON.stringify(finished.slice(0, 200)))
  renderFinished()
})

document.getElementById('clear').addEventListener('click', () => {
  window.localStorage.removeItem(FINISHED_KEY)
  renderFinished()
})
document.getElementById('endpoint').textContent = endpoint
renderFinished()

window.uppy = uppy // for people poking at the page, and for the browser tests
