# frozen_string_literal: true

require 'polyphony/http'

module Rack
  module Handler
    # `rackup -s polyphony`: serves the app with Polyphony::HTTP.
    module Polyphony
      DEFAULT_OPTIONS = { Host: '0.0.0.0', Port: 9292 }.freeze

      # Options from rackup: `Host`, `Port`, and `workers` (also taken from
      # the environment as WORKERS).
      def self.run(app, **options)
        options = DEFAULT_OPTIONS.merge(options)
        workers = Integer(options[:workers] || ENV.fetch('WORKERS', 1))
        adapter = ::Polyphony::HTTP::RackAdapter.new(app, multiprocess: workers > 1)
        yield nil if block_given?
        ::Polyphony::HTTP.serve(options[:Host], Integer(options[:Port]), workers: workers, &adapter)
      end

      def self.valid_options
        { 'Host=HOST' => 'Hostname to listen on (default: 0.0.0.0)',
          'Port=PORT' => 'Port to listen on (default: 9292)',
          'workers=N' => 'Worker processes (default: 1)' }
      end
    end

    register :polyphony, Polyphony if respond_to?(:register)
  end
end
