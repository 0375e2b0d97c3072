# frozen_string_literal: true

$LOAD_PATH.unshift File.expand_path('../lib', __dir__)
require 'polyphony'
require 'open3'
require 'rbconfig'
require_relative 'support/servers'

module SpecHelpers
  RUBY = File.join(RbConfig::CONFIG['bindir'], RbConfig::CONFIG['ruby_install_name'])
  LIB = File.expand_path('../lib', __dir__)

  # Runs `code` in a child Ruby with polyphony loaded (same backend as this
  # run); returns [stdout, stderr, status].
  # A child still running after `timeout` seconds is killed (its status
  # then reports the signal).
  def run_ruby(code, env: {}, stdin: '', timeout: 30)
    Open3.popen3(env, RUBY, '-I', LIB, '-e', code) do |i, o, e, t|
      out = Thread.new { o.read }
      err = Thread.new { e.read }
      i.write(stdin)
      i.close
      Process.kill(:KILL, t.pid) unless t.join(timeout)
      [out.value, err.value, t.value]
    end
  end

  def backend
    Thread.current.backend
  end

  # A certificate for `localhost` generated here, and its key (cached).
  def self_signed_cert
    @@self_signed_cert ||= begin # rubocop:disable Style/ClassVars
      key = OpenSSL::PKey::RSA.new(2048)
      cert = OpenSSL::X509::Certificate.new
      cert.version = 2
      cert.serial = 1
      cert.subject = cert.issuer = OpenSSL::X509::Name.parse('/CN=localhost')
      cert.public_key = key.public_key
      cert.not_before = Time.now - 60
      cert.not_after = Time.now + 3600
      add_san(cert)
      cert.sign(key, OpenSSL::Digest.new('SHA256'))
      [cert, key]
    end
  end

  def add_san(cert)
    ef = OpenSSL::X509::ExtensionFactory.new
    ef.subject_certificate = ef.issuer_certificate = cert
    cert.add_extension(ef.create_extension('subjectAltName', 'DNS:localhost,IP:127.0.0.1', false))
  end

  def server_context
    cert, key = self_signed_cert
    OpenSSL::SSL::SSLContext.new.tap do |ctx|
      ctx.cert = cert
      ctx.key = key
    end
  end

  # A client context that trusts only the spec's certificate.
  def client_context
    store = OpenSSL::X509::Store.new
    store.add_cert(self_signed_cert[0])
    OpenSSL::SSL::SSLContext.new.tap do |ctx|
      ctx.set_params(verify_mode: OpenSSL::SSL::VERIFY_PEER, cert_store: store)
    end
  end

  # Runs the block while a fiber counts `interval` ticks; returns the
  # block's value and the tick count (shows that other fibers kept running).
  def with_ticker(interval = 0.01)
    ticks = 0
    ticker = spin do
      loop do
        sleep interval
        ticks += 1
      end
    end
    [yield, ticks]
  ensure
    ticker&.stop
  end

  # Echoes every connection `server` accepts, one fiber each; returns it.
  def serve_echo(server)
    spin do
      server.accept_loop do |conn|
        spin do
          conn.read_loop { |data| conn.write(data) }
        ensure
          conn.close
        end
      end
    end
    server
  end

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end
end

RSpec.configure do |config|
  config.include SpecHelpers
  config.disable_monkey_patching!
  config.order = :defined

  config.before(:suite) do
    os = File.read('/etc/os-release')[/^PRETTY_NAME="?([^"\n]*)/, 1] if File.exist?('/etc/os-release')
    puts "polyphony specs on the #{Thread.current.backend.kind} backend (ruby #{RUBY_VERSION}, #{os || 'unknown OS'})"
  end

  config.after(:suite) { TestServers.stop_all }

  config.after do
    # Nothing may leak from one example into the next.
    Fiber.current.shutdown_all_children
    Fiber.current.receive_all_pending
    Fiber.current.__reset_monitor_mailbox__
    backend.idle_proc = nil
  end
end
