# frozen_string_literal: true

# `require 'polyphony/adapters/postgres'`, kept for API
# compatibility. No patching is needed: pg waits on its socket through
# `rb_io_wait`, which Polyphony's Fiber::Scheduler turns into a fiber-aware
# wait on the thread's backend. This only loads pg and makes sure its
# asynchronous API (the one that waits through Ruby) is in use.
require 'polyphony'
require 'pg'

PG::Connection.async_api = true if PG::Connection.respond_to?(:async_api=)

# `PG.connect_async(...)`: a connection made without blocking the thread
# (pg's asynchronous connect, waiting through the backend); `PG.connect` is
# the same once this file is loaded. `PG.connect_sync(...)`: pg's blocking
# `connect_start`/`connect_poll` loop, for code that must not switch fibers.
module PG
  class << self
    def connect_async(*args, **opts)
      PG::Connection.async_connect(*args, **opts)
    end

    def connect_sync(*args, **opts)
      PG::Connection.sync_connect(*args, **opts)
    end
  end
end
