using System.CommandLine;
using Shepherd.Cli.Running;

namespace Shepherd.Cli.Commands;

/// <summary>The options of where requests go and how they are sent, shared by <c>run</c> and <c>serve</c>.</summary>
internal sealed class EngineOptionSet
{
    private readonly ChoiceOption<ProviderChoice> _provider;
    private readonly Option<Uri?> _baseUrl;
    private readonly Option<List<UpstreamTarget>> _upstream;
    private readonly Option<string?> _config;
    private readonly Option<string?> _apiKey;
    private readonly Option<string> _anthropicVersion;
    private readonly RateLimitOptionSet _limits;
    private readonly Option<int> _concurrency;
    private readonly Option<int> _maxAttempts;
    private readonly Option<double> _timeout;
    private readonly Option<bool> _verbose;
    private readonly SimulatorOptionSet _simulator = new(prefix: "sim-", defaultLatencyMs: 250, defaultJitterMs: 150);

    public EngineOptionSet(string providerDescription)
    {
        _provider = CliOptions.Choice("--provider", providerDescription, ProviderChoice.Auto,
            ("sim", ProviderChoice.Sim), ("openai", ProviderChoice.OpenAI), ("anthropic", ProviderChoice.Anthropic));
        _baseUrl = CliOptions.Url("--base-url", "The provider's base url, such as https://api.openai.com/v1 or https://api.anthropic.com");
        _upstream = CliOptions.Upstreams("--upstream", "Another server for the same models (repeat it; URL or URL@WEIGHT): traffic is shared by weight and moves away from a failing one");
        _config = CliOptions.FilePath("--config", "A configuration file (shepherd.json) with upstreams, keys, weights and per-lane limits", "FILE");
        _apiKey = new Option<string?>("--api-key") { Description = "The provider's API key; defaults to OPENAI_API_KEY or ANTHROPIC_API_KEY" };
        _anthropicVersion = new Option<string>("--anthropic-version") { Description = "The anthropic-version header", DefaultValueFactory = _ => "2023-06-01" };
        _limits = new RateLimitOptionSet(prefix: "",
            rpm: "Requests per minute per lane; by default learned from the provider's rate-limit headers",
            tpm: "Tokens per minute per lane (prompt + max_tokens); by default learned from the provider's headers",
            itpm: "Input tokens per minute per lane, where the provider limits them apart (Anthropic); by default learned from its headers",
            otpm: "Output tokens per minute per lane, where the provider limits them apart (Anthropic); by default learned from its headers");
        _concurrency = CliOptions.Int("--concurrency", "The most requests in flight per lane; the lane adapts below it", 32, 1, 10_000);
        _maxAttempts = CliOptions.Int("--max-attempts", "Attempts per request before a transient failure (5xx, timeout, a dropped connection) is final; 429s, outages and refused keys use none", 6, 1, 100);
        _timeout = CliOptions.Seconds("--timeout", "Seconds one attempt may take", 600, 0.001);
        _verbose = new Option<bool>("--verbose") { Description = "Log every retry and failure to stderr" };
    }

    public IEnumerable<Option> All =>
        [_provider, _baseUrl, _upstream, _config, _apiKey, _anthropicVersion, .. _limits.All, _concurrency, _maxAttempts, _timeout, _verbose, .. _simulator.All];

    /// <summary>Fills the shared settings of <paramref name="settings"/> from the command line.</summary>
    public T Read<T>(ParseResult parse, T settings)
        where T : EngineSettings => settings with
        {
            Provider = _provider.ValueIn(parse),
            BaseUrl = parse.GetValue(_baseUrl),
            Upstreams = parse.GetValue(_upstream) ?? [],
            ConfigPath = parse.GetValue(_config),
            RequestsPerMinute = _limits.RequestsPerMinute(parse),
            TokensPerMinute = _limits.TokensPerMinute(parse),
            InputTokensPerMinute = _limits.InputTokensPerMinute(parse),
            OutputTokensPerMinute = _limits.OutputTokensPerMinute(parse),
            ApiKey = parse.GetValue(_apiKey),
            AnthropicVersion = parse.GetValue(_anthropicVersion)!,
            Concurrency = parse.GetValue(_concurrency),
            MaxAttempts = parse.GetValue(_maxAttempts),
            RequestTimeout = TimeSpan.FromSeconds(parse.GetValue(_timeout)),
            Verbose = parse.GetValue(_verbose),
            Simulator = _simulator.Read(parse),
            SimulatorSeed = _simulator.Seed(parse),
        };
}
