# frozen_string_literal: true

# `require 'polyphony/adapters/mysql2'`: Mysql2 queries park only the
# calling fiber. Every client is made asynchronous (`config[:async]`), and
# `query` sends the query, waits for the connection's socket to become
# readable on the thread's backend, then takes the result.
require 'polyphony'
require 'mysql2'

module Polyphony
  # Prepended to Mysql2::Client.
  module Mysql2ClientExtensions
    def initialize(config)
      config[:async] = true
      super
    end

    # Runs `sql` and returns its result (a Mysql2::Result, or nil for a
    # statement without one), waiting without blocking the thread.
    def query(sql, **options)
      super(sql, **options, async: true)
      Thread.current.backend.wait_io(socket, false)
      async_result
    end
  end
end

::Mysql2::Client.prepend(Polyphony::Mysql2ClientExtensions)
