// Same as runtime/orchard.cjs: the SDK's "future releases need Node 22" notice is noise under a pinned SDK.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// ONNX Runtime's telemetry off in every test process, as loadOrt() does (runtime/contracts/deployment.ts).
process.env.ORT_DISABLE_TELEMETRY = '1';
process.env.ORT_TELEMETRY_DISABLED = '1';
