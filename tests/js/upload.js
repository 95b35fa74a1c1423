// Upload one file with tus-js-client, as a browser or node app would, and print its URL.
//   node upload.js <endpoint> <file> [parallelUploads] [chunkSize]
// Exits non-zero, with the error on stderr, if the upload fails.
'use strict'

const fs = require('fs')
const path = require('path')
const tus = require('tus-js-client')

function main () {
  const [endpoint, file, parallel = '1', chunkSize] = process.argv.slice(2)
  if (!endpoint || !file) {
    console.error('usage: node upload.js <endpoint> <file> [parallelUploads] [chunkSize]')
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
  const upload = new tus.Upload(fs.createReadStream(file), options)
  upload.start()
}

main()
