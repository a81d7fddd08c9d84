<?php
/*
 * The trusted SPs, read from the SP metadata documents the harness dropped in ../sp/ with
 * SimpleSAMLphp's own parser (as metarefresh would): AuthnRequestsSigned becomes
 * validate.authnrequest (an unsigned request is then refused), WantAssertionsSigned becomes
 * saml20.sign.assertion, and the KeyDescriptor verifies the request signatures.
 */
foreach (glob(__DIR__ . '/../sp/*.xml') as $file) {
    foreach (\SimpleSAML\Metadata\SAMLParser::parseDescriptorsFile($file) as $entityId => $entity) {
        $sp = $entity->getMetadata20SP();
        if ($sp !== null) {
            $metadata[$entityId] = $sp;
        }
    }
}
