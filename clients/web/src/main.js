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

// An http(s) URL, absolute (relative ones are taken relative to this page), or null.
function webUrl(value) {
  try {
    const url = new URL(value, window.location.href)
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null
  } catch {
    return null
  }
}

// Where files go. Served by tusd-py, the page uploads to its server's endpoint, or to one its
// operator listed (--ui-endpoints) when ?endpoint= names it: a crafted link on the trusted origin
// cannot send a visitor's files elsewhere. A copy hosted elsewhere with neither meta set takes
// any http(s) ?endpoint=, so that it can name the server it is for.
const served = document.querySelector('meta[name="tus-endpoint"]')?.content
const listed = (document.querySelector('meta[name="tus-endpoints"]')?.content || '').split(/\s+/)
const allowed = [served, ...listed].filter(Boolean).map(webUrl).filter(Boolean)
const requested = params.get('endpoint')
const wanted = requested ? webUrl(requested) : null
const acceptable = wanted && (allowed.length === 0 || allowed.includes(wanted))
const endpoint = acceptable ? wanted : webUrl(served || '/files/')
if (requested && !acceptable) {
  document.getElementById('refused-endpoint').textContent = requested
  document.getElementById('refused').hidden = false
}
const chunkSize = Number(params.get('chunkSize')) || Infinity // default: one PATCH per file, like tus-js-client

const uppy = new Uppy({ id: 'tusd-py', debug: params.has('debug') })
  .use(Dashboard, {
    inline: true,
    target: '#uppy',
    width: '100%',
    height: 440,
    showProgressDetails: true,
    proudlyDisplayPoweredByUppy: false,
    showLinkToFileUploadResult: false, // upload URLs become links only in our list, where they are checked
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
      // The upload URL is the server's Location: a link only when it is http(s), never
      // `javascript:` or `data:` from a hostile or broken server.
      const href = webUrl(url)
      const label = document.createElement(href ? 'a' : 'span')
      label.textContent = name
      if (href) {
        label.href = href
        label.setAttribute('download', name)
      }
      item.append(label, ` (${Number(size).toLocaleString()} bytes)`)
      if (!href) item.append(' (no download link: the server answered with an unusable address)')
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
