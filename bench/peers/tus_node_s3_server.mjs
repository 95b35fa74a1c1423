// @tus/server with @tus/s3-store: the Node S3 peer for bench/compare's S3 workloads (issue 15).
// node tus_node_s3_server.mjs PORT BUCKET ENDPOINT   (run beside a node_modules with @tus/server and @tus/s3-store)
// Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, as for tusd-py; 8 MiB parts like tusd-py's default.
// The AWS SDK's newer default checksums are turned off (when_required), as tusd-py does, so both send the same.
import { Server } from '@tus/server'
import { S3Store } from '@tus/s3-store'

const [port, bucket, endpoint] = process.argv.slice(2)
const datastore = new S3Store({
  partSize: 8 * 1024 * 1024,
  s3ClientConfig: {
    bucket,
    endpoint,
    region: process.env.AWS_REGION || 'us-east-1',
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY },
  },
})
const server = new Server({ path: '/files', datastore })
server.listen({ host: '127.0.0.1', port: Number(port) }, () => console.log(`@tus/server + @tus/s3-store on ${port}`))
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0))
