# frozen_string_literal: true

# The throwaway memcached server of TestServers (spec/support/servers.rb).
module TestServers
  class << self
    # [host, port] of the memcached server (started if needed).
    def memcached
      @memcached ||= start_memcached
    end

    private

    # Daemonized (`-d`), so that it is not a child of the spec process.
    def start_memcached
      @memcached_dir = Dir.mktmpdir('polyphony-memcached')
      port = free_port
      log = File.join(@memcached_dir, 'log')
      @memcached_pidfile = File.join(@memcached_dir, 'pid')
      user = Process.uid.zero? ? ['-u', 'root'] : []
      run!('memcached', '-d', '-l', '127.0.0.1', '-p', port.to_s, '-U', '0', '-m', '32', '-P', @memcached_pidfile,
           *user, log: log)
      wait_for_port(port, log, 'memcached')
      ['127.0.0.1', port]
    rescue Errno::ENOENT
      raise StartError, 'memcached is not installed (Debian package memcached; bin/setup installs it)'
    end

    def stop_memcached
      return unless @memcached_pidfile

      stop_daemon(@memcached_pidfile, @memcached_dir)
      @memcached_pidfile = @memcached = nil
    end
  end
end
