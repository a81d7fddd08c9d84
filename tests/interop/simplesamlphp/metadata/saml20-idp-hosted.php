<?php
/*
 * The hosted IdP: signs with the harness's key (rsa-sha256, SimpleSAMLphp's default), users
 * from example-userpass, persistent NameID = the user's uid. What it signs (Response and/or
 * Assertion) is left to SimpleSAMLphp's defaults and the SP metadata (WantAssertionsSigned).
 */
$settings = json_decode(file_get_contents(__DIR__ . '/../settings.json'), true);

$metadata[$settings['base_url'] . '/saml2/idp/metadata.php'] = [
    'host' => '__DEFAULT__',
    'privatekey' => $settings['key_file'],
    'certificate' => $settings['cert_file'],
    'auth' => 'example-userpass',
    'signature.algorithm' => 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    'NameIDFormat' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
    // Single Logout by both bindings (its metadata lists both). SimpleSAMLphp 1.19 signs
    // its LogoutRequest and LogoutResponse only with 'sign.logout' => true (the default,
    // 'redirect.sign' false, sends them unsigned, which jitprov refuses)
    'SingleLogoutServiceBinding' => [
        'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect',
        'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
    ],
    'sign.logout' => $settings['sign_logout'] ?? false,
    'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic',
    'authproc' => [
        10 => [
            'class' => 'saml:AttributeNameID',
            'attribute' => 'uid',
            'Format' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
        ],
    ],
];
