using System.CommandLine;
using System.CommandLine.Parsing;

namespace Shepherd.Cli.Commands;

/// <summary>Options with range checks whose errors name the flag and the allowed values.</summary>
internal static class CliOptions
{
    public static Option<int> Int(string name, string description, int defaultValue, int min, int max)
    {
        var option = new Option<int>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.Validators.Add(result => CheckRange(result, result.GetValueOrDefault<int>(), min, max));
        return option;
    }

    public static Option<long?> OptionalLong(string name, string description, long min)
    {
        var option = new Option<long?>(name) { Description = description };
        option.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<long?>() is { } value && value < min)
            {
                result.AddError($"{name} must be at least {min}; got {value}.");
            }
        });
        return option;
    }

    public static Option<double> Seconds(string name, string description, double defaultValue, double min)
    {
        var option = new Option<double>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.Validators.Add(result =>
        {
            var value = result.GetValueOrDefault<double>();
            if (double.IsNaN(value) || value < min)
            {
                result.AddError($"{name} must be a number of seconds of at least {min}; got {value}.");
            }
        });
        return option;
    }

    public static Option<double?> OptionalSeconds(string name, string description, double min)
    {
        var option = new Option<double?>(name) { Description = description };
        option.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<double?>() is { } value && (!double.IsFinite(value) || value < min))
            {
                result.AddError($"{name} must be a number of seconds of at least {min}; got {value}.");
            }
        });
        return option;
    }

    public static Option<double> Share(string name, string description)
    {
        var option = new Option<double>(name) { Description = description };
        option.Validators.Add(result =>
        {
            var value = result.GetValueOrDefault<double>();
            if (double.IsNaN(value) || value is < 0 or > 1)
            {
                result.AddError($"{name} is a share between 0 and 1 (0.02 is 2%); got {value}.");
            }
        });
        return option;
    }

    public static Option<Uri?> Url(string name, string description)
    {
        return new Option<Uri?>(name)
        {
            Description = description,
            CustomParser = result =>
            {
                var text = result.Tokens.Single().Value;
                if (Uri.TryCreate(text, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
                {
                    return uri;
                }

                result.AddError($"{name} must be an absolute http or https url, such as https://api.openai.com/v1; got '{text}'.");
                return null;
            },
        };
    }

    public static Option<TimeSpan?> Duration(string name, string description)
    {
        return new Option<TimeSpan?>(name)
        {
            Description = description,
            CustomParser = result =>
            {
                var text = result.Tokens.Single().Value;
                if (Engine.Upstreams.RateLimitSnapshot.ParseDuration(text) is { } duration && duration > TimeSpan.Zero)
                {
                    return duration;
                }

                result.AddError($"{name} is a duration such as 24h, 90m or 30s; got '{text}'.");
                return null;
            },
        };
    }

    /// <summary><c>--upstream URL</c> or <c>--upstream URL@WEIGHT</c>, repeated.</summary>
    public static Option<List<Running.UpstreamTarget>> Upstreams(string name, string description)
    {
        return new Option<List<Running.UpstreamTarget>>(name)
        {
            Description = description,
            AllowMultipleArgumentsPerToken = false,
            CustomParser = result =>
            {
                var targets = new List<Running.UpstreamTarget>();
                foreach (var token in result.Tokens)
                {
                    var text = token.Value;
                    var at = text.LastIndexOf('@');
                    var weight = 1;
                    if (at > text.IndexOf("://", StringComparison.Ordinal) + 2 && at > 0)
                    {
                        if (!int.TryParse(text[(at + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out weight) || weight < 1)
                        {
                            result.AddError($"{name} {text}: the weight after @ must be a whole number of at least 1.");
                            return [];
                        }

                        text = text[..at];
                    }

                    if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
                    {
                        result.AddError($"{name} must be an absolute http or https url, optionally followed by @WEIGHT; got '{token.Value}'.");
                        return [];
                    }

                    targets.Add(new Running.UpstreamTarget(uri, weight));
                }

                return targets;
            },
        };
    }

    private static void CheckRange(OptionResult result, int value, int min, int max)
    {
        if (value < min || value > max)
        {
            result.AddError($"{result.Option.Name} must be between {min} and {max}; got {value}.");
        }
    }
}
