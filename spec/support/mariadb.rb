# frozen_string_literal: true

require 'shellwords'

# The throwaway MariaDB server of TestServers (spec/support/servers.rb).
module TestServers
  class << self
    # Connection parameters of the MariaDB server (started if needed):
    # `{ host:, port:, username: }`, no password (grant tables skipped).
    def mariadb
      @mariadb ||= start_mariadb
    end

    private

    # Started through `sh -c '... &'`, so that it is not a child of the spec
    # process (specs wait for "any child").
    def start_mariadb
      @maria_dir = Dir.mktmpdir('polyphony-mariadb')
      data = File.join(@maria_dir, 'data')
      log = File.join(@maria_dir, 'log')
      user = Process.uid.zero? ? ['--user=root'] : []
      run!('mariadb-install-db', '--no-defaults', "--datadir=#{data}", '--auth-root-authentication-method=normal',
           '--skip-test-db', *user, log: log)
      port = free_port
      @maria_pidfile = File.join(@maria_dir, 'pid')
      args = ['/usr/sbin/mariadbd', '--no-defaults', *user, "--datadir=#{data}",
              "--socket=#{File.join(@maria_dir, 'sock')}", "--port=#{port}", '--bind-address=127.0.0.1',
              "--pid-file=#{@maria_pidfile}", "--log-error=#{log}", '--skip-grant-tables', '--skip-log-bin',
              '--innodb-buffer-pool-size=16M', '--max-connections=200']
      run!('sh', '-c', "#{args.map { |a| Shellwords.escape(a) }.join(' ')} >/dev/null 2>&1 &", log: log)
      wait_for_port(port, log, 'mariadbd')
      { host: '127.0.0.1', port: port, username: 'root' }
    rescue Errno::ENOENT
      raise StartError, 'MariaDB is not installed (Debian package mariadb-server; bin/setup installs it)'
    end

    def stop_mariadb
      return unless @maria_pidfile

      stop_daemon(@maria_pidfile, @maria_dir)
      @maria_pidfile = @mariadb = nil
    end
  end
end
