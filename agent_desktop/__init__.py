"""The Quart web app, Socket.IO namespaces, browser front end, and the process entry points that wire it all."""
