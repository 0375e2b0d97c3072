# frozen_string_literal: true

require 'socket'
require 'tmpdir'
require 'fileutils'

# Throwaway PostgreSQL, Redis and MariaDB servers on loopback for the specs
# that talk to real servers (spec/adapters_spec.rb, spec/fiber_scheduler_spec.rb). Each starts on first use and is
# stopped when the suite ends. A server that cannot start raises with its
# log: such specs fail, they are never skipped.
module TestServers
  class StartError < RuntimeError; end

  class << self
    # Connection parameters of the PostgreSQL server (started if needed).
    def postgres
      @postgres ||= start_postgres
    end

    # [host, port] of the Redis server (started if needed).
    def redis
      @redis ||= start_redis
    end

    def stop_all
      return unless Process.pid == OWNER_PID

      stop_postgres
      stop_redis
      stop_mariadb
      stop_memcached
    end

    private

    def free_port
      server = TCPServer.new('127.0.0.1', 0)
      server.addr[1]
    ensure
      server&.close
    end

    def pg_bin(name)
      dir = Dir['/usr/lib/postgresql/*/bin'].max_by { |d| d[%r{postgresql/(\d+)}, 1].to_i }
      raise StartError, 'PostgreSQL is not installed (Debian package postgresql; bin/setup installs it)' unless dir

      File.join(dir, name)
    end

    # As root, PostgreSQL runs as the `postgres` user.
    def as_pg_user(*cmd)
      Process.uid.zero? ? ['runuser', '-u', 'postgres', '--', *cmd] : cmd
    end

    def run!(*cmd, log:)
      out, status = Open3.capture2e(*cmd)
      return if status.success?

      raise StartError, "#{cmd.join(' ')} failed (#{status}):\n#{out}\n#{File.exist?(log) ? File.read(log) : ''}"
    end

    def start_postgres
      @pg_dir = Dir.mktmpdir('polyphony-pg')
      FileUtils.chown('postgres', nil, @pg_dir) if Process.uid.zero?
      data = File.join(@pg_dir, 'data')
      log = File.join(@pg_dir, 'log')
      port = free_port
      run!(*as_pg_user(pg_bin('initdb'), '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync'), log: log)
      opts = "-p #{port} -k #{@pg_dir} -c listen_addresses=127.0.0.1 -c max_connections=60 -c fsync=off"
      run!(*as_pg_user(pg_bin('pg_ctl'), '-D', data, '-l', log, '-o', opts, '-w', 'start'), log: log)
      @pg_ctl = [pg_bin('pg_ctl'), data]
      { host: '127.0.0.1', port: port, user: 'postgres', dbname: 'postgres' }
    end

    def stop_postgres
      return unless @pg_ctl

      Open3.capture2e(*as_pg_user(@pg_ctl[0], '-D', @pg_ctl[1], '-m', 'immediate', 'stop'))
      FileUtils.rm_rf(@pg_dir)
      @pg_ctl = @postgres = nil
    end

    # Daemonized, so that it is not a child of the spec process (specs wait
    # for "any child").
    def start_redis
      @redis_dir = Dir.mktmpdir('polyphony-redis')
      port = free_port
      log = File.join(@redis_dir, 'log')
      @redis_pidfile = File.join(@redis_dir, 'pid')
      run!('redis-server', '--port', port.to_s, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
           '--dir', @redis_dir, '--maxclients', '1000', '--daemonize', 'yes', '--pidfile', @redis_pidfile,
           '--logfile', log, log: log)
      wait_for_port(port, log, 'redis-server')
      ['127.0.0.1', port]
    rescue Errno::ENOENT
      raise StartError, 'redis-server is not installed (Debian package redis-server; bin/setup installs it)'
    end

    def wait_for_port(port, log, name)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
      loop do
        return TCPSocket.new('127.0.0.1', port).close
      rescue SystemCallError
        if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
          raise StartError, "#{name} did not start on port #{port}:\n#{File.read(log)}"
        end

        sleep 0.05
      end
    end

    def stop_redis
      return unless @redis_pidfile

      stop_daemon(@redis_pidfile, @redis_dir)
      @redis_pidfile = @redis = nil
    end

    # Stops a server that is not our child (TERM to the pid in `pidfile`)
    # and removes its folder.
    def stop_daemon(pidfile, dir)
      pid = File.read(pidfile).to_i if File.exist?(pidfile)
      Process.kill('TERM', pid) if pid&.positive?
    rescue Errno::ESRCH
      nil
    ensure
      FileUtils.rm_rf(dir)
    end
  end
end

# Also when the run is cut short (after(:suite) does not run then); only in
# the process that started them, not in the children that specs fork.
TestServers::OWNER_PID = Process.pid
at_exit { TestServers.stop_all if Process.pid == TestServers::OWNER_PID }

require_relative 'mariadb'
require_relative 'memcached'
