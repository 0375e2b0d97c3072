# frozen_string_literal: true

# `require 'polyphony/adapters/postgres'`: pg's queries park only the
# calling fiber, in every fiber. pg waits for its socket in C
# (`rb_io_wait`), which only Ruby's Fiber::Scheduler makes fiber-aware, and
# only in non-blocking fibers: not in Ruby 3.1's main fiber. So the query
# methods are redone here on libpq's asynchronous API: send the query, then
# wait for the socket on the thread's backend while the connection is busy,
# then take the results (all of them: the last one is returned, an error
# raised).
require 'polyphony'
require 'pg'

PG::Connection.async_api = true if PG::Connection.respond_to?(:async_api=)

module Polyphony
  # Prepended to PG::Connection.
  module PGConnectionExtensions
    # `exec`/`query`/`async_exec(sql) { |result| }`.
    def async_exec(*args, &)
      __polyphony_run__(:send_query, args, &)
    end

    def async_exec_params(*args, &)
      __polyphony_run__(:send_query_params, args, &)
    end

    def async_exec_prepared(*args, &)
      __polyphony_run__(:send_query_prepared, args, &)
    end

    def async_prepare(*args, &)
      __polyphony_run__(:send_prepare, args, &)
    end

    # The next result (nil when there is none), waiting without blocking
    # the thread.
    def async_get_result(&)
      __polyphony_wait_not_busy__
      sync_get_result(&)
    end

    # The last result of the query sent (nil if none), all others taken.
    def async_get_last_result
      last = nil
      while (r = async_get_result)
        last&.clear
        last = r
      end
      last&.check
      last
    end

    # Waits until the connection is not busy (`timeout` is ignored, as
    # Polyphony's). Returns true.
    def block(_timeout = nil)
      __polyphony_wait_not_busy__
      true
    end

    # The next NOTIFY: its channel (and `|channel, pid, payload|` to the
    # block), or nil if `timeout` seconds pass first.
    def wait_for_notify(timeout = nil)
      deadline = timeout && (::Process.clock_gettime(::Process::CLOCK_MONOTONIC) + timeout)
      loop do
        consume_input
        if (note = notifies)
          yield note[:relname], note[:be_pid], note[:extra] if block_given?
          return note[:relname]
        end
        left = deadline && (deadline - ::Process.clock_gettime(::Process::CLOCK_MONOTONIC))
        return nil if left && left <= 0

        __polyphony_wait_readable__(left)
      end
    end

    alias exec async_exec
    alias query async_exec
    alias async_query async_exec
    alias exec_params async_exec_params
    alias exec_prepared async_exec_prepared
    alias prepare async_prepare
    alias get_result async_get_result
    alias get_last_result async_get_last_result
    alias wait_for_notify_with_timeout wait_for_notify

    private

    def __polyphony_run__(send_method, args)
      __polyphony_drain__ if is_busy
      __send__(send_method, *args)
      result = __polyphony_last_result__
      return result unless block_given?

      begin
        yield result
      ensure
        result&.clear
      end
    end

    # The query's last result. A fiber interrupted (stopped, timed out,
    # raised into) while the server still runs the query asks the server to
    # cancel it, so that the connection is soon free again.
    def __polyphony_last_result__
      async_get_last_result
    rescue ::Exception # rubocop:disable Lint/RescueException
      cancel if is_busy
      raise
    end

    # Drops the results of an earlier query whose fiber gave up on it
    # (errors included: they are not this query's).
    def __polyphony_drain__
      while (r = async_get_result)
        r.clear
      end
    end

    def __polyphony_wait_not_busy__
      loop do
        consume_input
        return unless is_busy

        __polyphony_wait_readable__(nil)
      end
    end

    def __polyphony_wait_readable__(timeout)
      backend = Thread.current.backend
      if timeout
        backend.timeout(timeout, nil, nil) { backend.wait_io(socket_io, false) }
      else
        backend.wait_io(socket_io, false)
      end
    end
  end
end

::PG::Connection.prepend(Polyphony::PGConnectionExtensions)

# `PG.connect_async(...)`: a connection made with pg's asynchronous connect
# (it waits through Ruby's IO methods); `PG.connect` is the same. `PG.connect_sync(...)`: pg's
# blocking connect, for code that must not switch fibers.
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
