# frozen_string_literal: true

module Polyphony
  VERSION = '1.6.0'
end
