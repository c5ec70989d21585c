// Same as runtime/orchard.cjs: the SDK's "future releases need Node 22" notice is noise under a pinned SDK.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
