using System.CommandLine;

namespace Shepherd.Cli.Commands;

/// <summary>
/// The four rate-limit options, <c>--rpm</c>, <c>--tpm</c>, <c>--itpm</c> and <c>--otpm</c>, as the
/// engine's set and the simulator's set both take them. Each set says in its own words what the
/// limits mean there: limits the engine keeps to, or limits the simulator enforces.
/// </summary>
internal sealed class RateLimitOptionSet(string prefix, string rpm, string tpm, string itpm, string otpm)
{
    private readonly Option<long?> _rpm = CliOptions.OptionalLong($"--{prefix}rpm", rpm, 1);
    private readonly Option<long?> _tpm = CliOptions.OptionalLong($"--{prefix}tpm", tpm, 1);
    private readonly Option<long?> _itpm = CliOptions.OptionalLong($"--{prefix}itpm", itpm, 1);
    private readonly Option<long?> _otpm = CliOptions.OptionalLong($"--{prefix}otpm", otpm, 1);

    public IEnumerable<Option> All => [_rpm, _tpm, _itpm, _otpm];

    public long? RequestsPerMinute(ParseResult parse) => parse.GetValue(_rpm);

    public long? TokensPerMinute(ParseResult parse) => parse.GetValue(_tpm);

    public long? InputTokensPerMinute(ParseResult parse) => parse.GetValue(_itpm);

    public long? OutputTokensPerMinute(ParseResult parse) => parse.GetValue(_otpm);
}
