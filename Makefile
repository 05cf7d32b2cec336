# Common tasks. `make demo` sets everything up and runs the demo on SQLite;
# `make test` runs the whole suite (SQLite, plus PostgreSQL and MariaDB when reachable);
# `make test-fast` the in-process core on SQLite (docs/development.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The settings refuse to start without DJANGO_SECRET_KEY (unless DEBUG is on), so the
# demo and `make run` share a random key made once on this machine, kept in var/.
DEV_SECRET_KEY := var/dev-secret-key
# The demo keeps the terminal to one summary line per run; the log file has every line.
DEMO_ENV := DJANGO_SECRET_KEY="$$(cat $(DEV_SECRET_KEY))" EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend LOG_CONSOLE_LEVEL=WARNING

.PHONY: setup demo run test test-fast lint format bench outdated messages clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-esp.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# The demo's wallet settings: development certificates made on this machine, so Apple
# passes are really built and signed offline (devices would not accept them).
DEMO_WALLET_ENV := var/demo-wallet.env

$(DEV_SECRET_KEY):
	mkdir -p var
	umask 077 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > $@

demo: setup $(DEV_SECRET_KEY)
	$(DEMO_ENV) $(BIN)/python manage.py migrate --noinput
	$(DEMO_ENV) $(BIN)/python manage.py make_dev_certificates --out-dir var/certs --force | grep '^[A-Z_]*=' > $(DEMO_WALLET_ENV)
	set -a && . ./$(DEMO_WALLET_ENV) && DJANGO_DEBUG=1 $(DEMO_ENV) $(BIN)/python manage.py load_demo
	$(DEMO_ENV) $(BIN)/python manage.py process_email_jobs
	$(DEMO_ENV) $(BIN)/python manage.py process_email_jobs
	set -a && . ./$(DEMO_WALLET_ENV) && $(DEMO_ENV) $(BIN)/python manage.py process_wallet_jobs
	@echo
	@echo "Demo done. Look at:"
	@echo "  the emails:   var/sent-emails/ (Django's file mail backend)"
	@echo "  the log:      var/log/app.log (grep ProcessBulk var/log/app.log)"
	@echo "  the web app:  make run, then http://127.0.0.1:8000/background-jobs/ (admin / demo-password)"
	@echo "  the operators' Django admin: http://127.0.0.1:8000/admin/ (operator / demo-password)"
	@echo "  a signed pass: the 'Add to Apple Wallet' link on any card page (make run)"

run: setup $(DEV_SECRET_KEY)
	set -a && { [ ! -f $(DEMO_WALLET_ENV) ] || . ./$(DEMO_WALLET_ENV); } && \
	DJANGO_DEBUG=1 $(DEMO_ENV) $(BIN)/python manage.py runserver 127.0.0.1:8000

test: setup
	bin/run-tests

# The core tier only (no tests/processes/, no tests/browser/), on SQLite, printing as it goes.
test-fast: setup
	TEST_DATABASES=sqlite TEST_TIERS=core TEST_PARALLEL=false bin/run-tests

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Installed packages with a newer release on the index (pins and their dependencies).
outdated: setup
	$(BIN)/pip list --outdated

# The email benchmark with each company's pace off (at the default 50 a minute, 10,000
# emails would take 20 minutes and measure the pace, not the sending).
bench: setup $(DEV_SECRET_KEY)
	DJANGO_SECRET_KEY="$$(cat $(DEV_SECRET_KEY))" BULKJOBS_EMAIL_COMPANY_RATE=0 $(BIN)/python bench/bench_email.py

# Translations (docs/languages.md): collect the marked strings into
# locale/<lang>/LC_MESSAGES/django.po, then, once they are translated, compile the .mo
# files that are committed (hosts then need no gettext). Needs GNU gettext here only
# (apt-get install gettext). tests/config/test_translations.py fails until every entry
# is translated, none is fuzzy and the .mo matches.
MESSAGES_ENV := DJANGO_SETTINGS_MODULE=tests.settings
LANGUAGES_TRANSLATED := de

messages: setup
	@command -v xgettext >/dev/null || { echo "make messages needs GNU gettext: apt-get install gettext"; exit 1; }
	$(MESSAGES_ENV) $(BIN)/python manage.py makemessages $(addprefix -l ,$(LANGUAGES_TRANSLATED)) \
		--add-location=file --no-obsolete --ignore=var --ignore=tests --ignore=bench
	$(MESSAGES_ENV) $(BIN)/python manage.py compilemessages --ignore=.venv --ignore=.venv313 --ignore=var

clean:
	rm -rf var
