# frozen_string_literal: true

# `require 'polyphony/adapters/postgres'`, kept for API
# compatibility. No patching is needed: pg waits on its socket through
# `rb_io_wait`, which Polyphony's Fiber::Scheduler turns into a fiber-aware
# wait on the thread's backend. This only loads pg and makes sure its
# asynchronous API (the one that waits through Ruby) is in use.
require 'polyphony'
require 'pg'

PG::Connection.async_api = true if PG::Connection.respond_to?(:async_api=)
