# frozen_string_literal: true

# `require 'polyphony/adapters/sequel'`: a Sequel connection pool keyed by
# fiber, so that N fibers use up to N connections at once (the default
# pool of Sequel's databases from then on). Use it with an adapter whose
# queries park only the fiber (mysql2 with `polyphony/adapters/mysql2`,
# postgres through pg).
require 'polyphony'
require 'sequel'

module Polyphony
  # A Sequel connection pool of up to `max_connections` (4 by default)
  # connections, made on demand and lent to one fiber at a time: a fiber
  # waits (fiber-aware) when all are lent.
  class FiberConnectionPool < ::Sequel::ConnectionPool
    def initialize(db, opts = ::Sequel::OPTS)
      super
      @max_size = Integer(opts[:max_connections] || 4)
      @pool = Polyphony::ResourcePool.new(limit: @max_size) { make_new(:default) }
    end

    attr_reader :max_size

    # Lends a connection to the block (the same one to nested calls of the
    # same fiber). A block left by any exception but an error the database
    # reported on a live connection (a stop, a timeout of Polyphony's or
    # Timeout's, an exception of the application, a lost connection) may
    # leave the connection mid-query or dead: it is then discarded, not lent
    # again.
    def hold(_server = nil)
      @pool.acquire do |conn|
        yield conn
      rescue ::Exception => e # rubocop:disable Lint/RescueException
        unless e.is_a?(::Sequel::DatabaseError) && !e.is_a?(::Sequel::DatabaseDisconnectError)
          @pool.discard!
          disconnect_connection(conn)
        end
        raise
      end
    end

    # Connections made so far.
    def size
      @pool.size
    end

    # Makes every connection now (`concurrent` is accepted for Sequel's
    # interface; they are made one after the other).
    def preconnect(_concurrent = false) # rubocop:disable Style/OptionalBooleanParameter
      @pool.fill!
    end

    # Closes the connections not lent now (Sequel's `disconnect`).
    def disconnect(*)
      @pool.available.times do
        @pool.acquire do |conn|
          @pool.discard!
          disconnect_connection(conn)
        end
      end
    end

    def servers
      [:default]
    end

    def pool_type
      :polyphony_fiber
    end
  end
end

# Sequel's databases use the fiber pool unless told otherwise.
module Polyphony
  # Prepended to Sequel::Database.
  module SequelDatabaseExtensions
    def connection_pool_default_options
      super.merge(pool_class: Polyphony::FiberConnectionPool)
    end
  end
end
::Sequel::Database.prepend(Polyphony::SequelDatabaseExtensions)
