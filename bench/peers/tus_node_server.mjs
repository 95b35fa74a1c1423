// @tus/server with @tus/file-store: the Node peer of bench/compare.
// node tus_node_server.mjs PORT DIRECTORY   (run from a directory whose node_modules has both packages)
import { Server } from '@tus/server'
import { FileStore } from '@tus/file-store'

const [port, directory] = process.argv.slice(2)
const server = new Server({ path: '/files', datastore: new FileStore({ directory }) })
server.listen({ host: '127.0.0.1', port: Number(port) }, () => console.log(`@tus/server on ${port}`))
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0))
