<?php
/*
 * SimpleSAMLphp (Debian's `simplesamlphp` package) as a test IdP, for jitprov's interop
 * tests: everything it writes stays in the harness's temporary directory, and what varies
 * (URL, keys, users) comes from settings.json written by tests/interop/simplesamlphp_idp.py.
 */
$settings = json_decode(file_get_contents(__DIR__ . '/settings.json'), true);
$work = $settings['work'];

$config = [
    'baseurlpath' => $settings['base_url'] . '/',
    'certdir' => $work . '/cert/',
    'loggingdir' => $work . '/log/',
    'datadir' => $work . '/data/',
    'tempdir' => $work . '/tmp',
    'metadatadir' => __DIR__ . '/metadata/',
    'attributenamemapdir' => '/etc/simplesamlphp/attributemap/',
    'secretsalt' => $settings['secret_salt'],
    'auth.adminpassword' => $settings['admin_password'],
    'admin.protectindexpage' => true,
    'admin.protectmetadata' => false,
    'admin.checkforupdates' => false,
    'timezone' => 'UTC',
    'production' => false,
    'showerrors' => true,
    'errorreporting' => false,
    'debug' => ['saml' => false, 'backtraces' => true, 'validatexml' => false],
    'logging.level' => SimpleSAML\Logger::INFO,
    'logging.handler' => 'file',
    'logging.logfile' => 'simplesamlphp.log',
    'statistics.out' => [],
    'enable.saml20-idp' => true,
    'enable.shib13-idp' => false,
    'enable.adfs-idp' => false,
    'module.enable' => ['exampleauth' => true, 'core' => true, 'saml' => true, 'admin' => true],
    'store.type' => 'phpsession',
    'session.cookie.secure' => false,
    'session.cookie.samesite' => null,
    'session.phpsession.savepath' => $work . '/sessions',
    'language.cookie.secure' => false,
    'language.cookie.samesite' => null,
    'theme.use' => 'default',
    'template.auto_reload' => false,
];
