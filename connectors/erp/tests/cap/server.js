// Serves the CAP model of this folder on 127.0.0.1 only (cds-serve binds every
// interface). PORT=0 picks a free port; the line "listening on URL" says which.
// Run with the CAP modules on NODE_PATH (see .ci/emulators-saas.sh).
const http = require('http')
const cds = require('@sap/cds')
const express = require('express')

process.chdir(__dirname)
cds.root = __dirname
const app = express()
app.listen = function (port, callback) {
  return http.createServer(this).listen(port, '127.0.0.1', callback)
}
cds.server({ app, port: Number(process.env.PORT || 0), in_memory: true, from: '*' }).then((server) => {
  const announce = () => console.log(`listening on http://127.0.0.1:${server.address().port}`)
  if (server.listening) announce()
  else server.on('listening', announce)
})
