# frozen_string_literal: true

module Polyphony
  module HTTP
    # The Rack server handler (`rackup -s polyphony`), registered as
    # `Rack::Handler::Polyphony` (Rack 2, lib/rack/handler/polyphony.rb) and
    # `Rackup::Handler::Polyphony` (rackup 2 for Rack 3,
    # lib/rackup/handler/polyphony.rb).
    module RackHandler
      DEFAULT_OPTIONS = { Host: '0.0.0.0', Port: 9292 }.freeze

      # Options from rackup: `Host`, `Port`, and `workers` (also taken from
      # the environment as WORKERS).
      def self.run(app, **options)
        options = DEFAULT_OPTIONS.merge(options)
        workers = Integer(options[:workers] || ENV.fetch('WORKERS', 1))
        adapter = RackAdapter.new(app, multiprocess: workers > 1)
        yield nil if block_given?
        HTTP.serve(options[:Host], Integer(options[:Port]), workers: workers, &adapter)
      end

      def self.valid_options
        { 'Host=HOST' => 'Hostname to listen on (default: 0.0.0.0)',
          'Port=PORT' => 'Port to listen on (default: 9292)',
          'workers=N' => 'Worker processes (default: 1)' }
      end
    end
  end
end
