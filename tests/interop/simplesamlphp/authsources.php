<?php
/*
 * One exampleauth:UserPass source, its users read from users.json at every request (a test
 * changes a user's attributes between two logins by rewriting that file). Each user gets a
 * `uid` attribute (its `subject`), which the IdP sends as a persistent NameID.
 */
$settings = json_decode(file_get_contents(__DIR__ . '/settings.json'), true);
$users = json_decode(file_get_contents($settings['users_file']), true);

$userpass = ['exampleauth:UserPass'];
foreach ($users as $name => $user) {
    $userpass[$name . ':' . $user['password']] = array_merge(
        $user['attributes'],
        ['uid' => [$user['subject'] ?? $name]]
    );
}

$config = [
    'admin' => ['core:AdminPassword'],
    'example-userpass' => $userpass,
];
