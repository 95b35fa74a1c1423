// Upload one file with tus-js-client, as a browser or node app would, and print its URL.
//   node upload.js <endpoint> <file> [parallelUploads] [chunkSize] [--protocol=ietf-draft-05] [--data-during-creation] [--trace]
// --protocol picks tus-js-client's protocol (tus-v1, the default, or ietf-draft-05, which
// speaks the IETF resumable-upload draft with Upload-Draft-Interop-Version: 6).
// --trace prints each request's method and protocol fields to stderr.
// Exits non-zero, with the error on stderr, if the upload fails.
'use strict'

const fs = require('fs')
const path = require('path')
const tus = require('tus-js-client')

function main () {
  const args = process.argv.slice(2)
  const flags = args.filter((arg) => arg.startsWith('--'))
  const [endpoint, file, parallel = '1', chunkSize] = args.filter((arg) => !arg.startsWith('--'))
  if (!endpoint || !file) {
    console.error('usage: node upload.js <endpoint> <file> [parallelUploads] [chunkSize] [--protocol=NAME] [--data-during-creation] [--trace]')
    process.exit(2)
  }
  const options = {
    endpoint,
    parallelUploads: Number(parallel),
    metadata: { filename: path.basename(file), filetype: 'application/octet-stream' },
    retryDelays: null, // a failure is a test failure, not something to paper over
    onError (error) {
      console.error(`upload failed: ${error}`)
      process.exit(1)
    },
    onSuccess () {
      console.log(upload.url)
    }
  }
  if (chunkSize) options.chunkSize = Number(chunkSize)
  for (const flag of flags) {
    if (flag.startsWith('--protocol=')) options.protocol = flag.slice('--protocol='.length)
    else if (flag === '--data-during-creation') options.uploadDataDuringCreation = true
    else if (flag === '--trace') {
      options.onBeforeRequest = (req) => {
        const fields = ['Tus-Resumable', 'Upload-Draft-Interop-Version', 'Upload-Complete', 'Upload-Offset', 'Content-Type']
        console.error(JSON.stringify({ method: req.getMethod(), ...Object.fromEntries(fields.map((name) => [name, req.getHeader(name)])) }))
      }
    }    else {
      console.error(`unknown option ${flag}`)
      process.exit(2)
    }
  }
  const upload = new tus.Upload(fs.createReadStream(file), options)
  upload.start()
}

main()
